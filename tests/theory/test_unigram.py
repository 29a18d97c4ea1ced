"""T1: the unigram model against an mpmath/longdouble reference and a generic optimiser."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from imbalance import unigram_equilibrium, zipf_pmf

from .reference import to_float, unigram_reference, unigram_reference_ld

LAMS = [1e-12, 1e-8, 1e-4, 1e-1, 1.0, 1e2, 1e6]
TOL = 1e-9  # the accuracy the toolkit promises for probabilities and losses


@pytest.mark.parametrize("K", [2, 10, 300])
@pytest.mark.parametrize("s", [0.5, 1.2, 3.0])
def test_matches_mpmath_reference(K, s):
    pi = zipf_pmf(K, s)
    eq = unigram_equilibrium(pi, LAMS)
    for i, lam in enumerate(LAMS):
        p, b, loss = (to_float(v) for v in unigram_reference(pi, lam))
        np.testing.assert_allclose(eq.probs[i], p, rtol=TOL, atol=0)
        np.testing.assert_allclose(eq.loss_per_token[i], loss, rtol=TOL, atol=0)
        np.testing.assert_allclose(eq.logits[i], b, rtol=0, atol=TOL * np.abs(b).max())
        np.testing.assert_allclose(eq.aggregate_loss[i], loss @ pi, rtol=TOL)
        np.testing.assert_allclose(eq.token_balanced_loss[i], loss.mean(), rtol=TOL)


@pytest.mark.parametrize("s", [0.5, 3.0])
def test_large_vocabulary_matches_longdouble_reference(s):
    pi = zipf_pmf(100_000, s)
    lams = [1e-12, 1e-3, 1e6]
    eq = unigram_equilibrium(pi, lams)
    assert np.isfinite(eq.probs).all() and np.isfinite(eq.logits).all()
    for i, lam in enumerate(lams):
        p, loss = unigram_reference_ld(pi, lam)
        np.testing.assert_allclose(eq.probs[i], p, rtol=TOL, atol=0)
        np.testing.assert_allclose(eq.loss_per_token[i], loss, rtol=TOL, atol=0)


def _objective(b, pi, lam):
    return -pi @ log_softmax(b) + 0.5 * lam * b @ b, softmax(b) - pi + lam * b


@pytest.mark.parametrize("lam", [1e-2, 0.3, 5.0])
def test_matches_generic_lbfgs_on_raw_objective(lam):
    pi = np.random.default_rng(1).dirichlet(np.full(40, 0.3))
    res = minimize(_objective, np.zeros(40), args=(pi, lam), jac=True, method="L-BFGS-B",
                   options=dict(gtol=1e-13, ftol=1e-16, maxiter=20_000))
    eq = unigram_equilibrium(pi, lam)
    # f is λ-strongly convex: ‖b − b*‖ <= ‖∇f(b)‖/λ at L-BFGS's point
    grad_norm = np.linalg.norm(_objective(res.x, pi, lam)[1])
    assert np.linalg.norm(res.x - eq.logits) <= grad_norm / lam + 1e-12
    # the exact minimiser is never worse than L-BFGS's point, up to the rounding of f itself
    assert eq.objective <= res.fun + 8 * np.finfo(float).eps * abs(res.fun)
    assert abs(eq.objective - _objective(eq.logits, pi, lam)[0]) <= 1e-14 * abs(eq.objective)


@pytest.mark.parametrize("lam", [1e-9, 1e-3, 1.0, 1e4])
def test_stationarity_and_zero_sum_from_returned_logits(lam):
    pi = zipf_pmf(500, 1.1)
    eq = unigram_equilibrium(pi, lam)
    p = softmax(eq.logits)  # independent of the solver's own probabilities
    np.testing.assert_allclose(p, eq.probs, rtol=1e-11)
    # λ b = π − p to the accuracy of b (κ-scaled rounding)
    np.testing.assert_allclose(lam * eq.logits, pi - p, rtol=0, atol=1e-13 * max(1.0, lam * np.abs(eq.logits).max()))
    assert abs(eq.logits.sum()) <= 1e-12 * np.abs(eq.logits).sum()


def test_lambda_axis_convention():
    pi = zipf_pmf(7, 1.0)
    vec = unigram_equilibrium(pi, np.array([0.1, 1.0]))
    one = unigram_equilibrium(pi, 1.0)
    assert vec.probs.shape == (2, 7) and vec.aggregate_loss.shape == (2,)
    assert one.probs.shape == (7,) and isinstance(one.aggregate_loss, float)
    np.testing.assert_allclose(vec.probs[1], one.probs, rtol=1e-14)


@pytest.mark.parametrize("pi,lam,name", [
    ([0.5, 0.6], 1.0, "pi"), ([1.0], 1.0, "pi"), ([0.5, np.nan], 1.0, "pi"), ([1.2, -0.2], 1.0, "pi"),
    ([[0.5, 0.5]], 1.0, "pi"), ([0.5, 0.5], 0.0, "lam"), ([0.5, 0.5], -1.0, "lam"),
    ([0.5, 0.5], np.nan, "lam"), ([0.5, 0.5], np.inf, "lam"), ([0.5, 0.5], [[1.0]], "lam"),
    ([0.5, 0.5], [], "lam"), ([0.5, 0.5], "big", "lam"),
])
def test_rejects_bad_input(pi, lam, name):
    with pytest.raises(ValueError, match=name):
        unigram_equilibrium(pi, lam)
