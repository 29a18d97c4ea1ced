"""T5/T7: the nuclear-norm solvers (branch factored) against generic factored training.

``ufm_equilibrium`` and ``factored_bigram_equilibrium`` solve the convex programs; the
reference trains the *factored* objectives with L-BFGS + Newton polish and certifies a lower
bound on the convex minimum (tests/properties/_nuclear_ref.py). The solver's objective must
lie in [lower bound, trained value + its own duality gap], and the two values must agree to
REL (see test_t5_t7_nuclear.py for how REL is set).
"""

import numpy as np
import pytest
from hypothesis import given

from imbalance.testing import bigram_counts, frequency_vectors, weight_decays
from imbalance.theory.factored_bigram import factored_bigram_equilibrium
from imbalance.theory.ufm import ufm_equilibrium

from . import _nuclear_ref as ref
from ._tol import EPS
from .test_t5_t7_nuclear import REL


def _scale(Z, w, mu, d_weights):
    # rounding of an objective value: CE of column x is a log-sum-exp of logits of size
    # max|z_x| (+ log V), weighted by w_x, plus μ times a sum of singular values
    V = Z.shape[0]
    return (w * (np.abs(Z).max(0) + np.log(V))).sum() + mu * ref.nuclear(Z * np.sqrt(d_weights))


def _check(obj, gap, trained, lower, scale):
    rounding = 64 * EPS * max(trained, scale)
    assert obj >= lower - rounding               # no solver value below a certified lower bound
    assert obj <= trained + gap + rounding        # the solver is at least as good as training
    assert abs(obj - trained) <= REL * trained + gap + rounding


@given(frequency_vectors(max_size=5, max_ratio=1e3), weight_decays(1e-3, 1.0), weight_decays(1e-3, 1.0))
def test_ufm_equilibrium_matches_trained_factored_model(pi, lam_w, lam_h):
    K = pi.size
    Q, w = np.eye(K), pi
    eq = ufm_equilibrium(pi, lam_w, lam_h)
    trained, Z = ref.fit_factored(Q, w, lam_w, lam_h, d_weights=pi, width=K)
    mu = np.sqrt(lam_w * lam_h)
    lower = ref.certified_lower_bound(Z, Q, w, mu, pi)
    _check(eq.objective, eq.gap, trained, lower, _scale(Z, w, mu, pi))


@given(bigram_counts(max_contexts=5, max_vocab=5), weight_decays(1e-3, 1.0), weight_decays(1e-3, 1.0))
def test_factored_bigram_equilibrium_matches_trained_model(counts, lam_w, lam_e):
    C = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    C = C.astype(np.float64)
    Q, w = (C / C.sum(1, keepdims=True)).T, C.sum(1) / C.sum()
    V, n = Q.shape
    eq = factored_bigram_equilibrium(counts, lam_w, lam_e)
    trained, Z = ref.fit_factored(Q, w, lam_w, lam_e, d_weights=np.ones(n), width=min(V, n) + 1)
    mu = np.sqrt(lam_w * lam_e)
    lower = ref.certified_lower_bound(Z, Q, w, mu, np.ones(n))
    _check(eq.objective, eq.gap, trained, lower, _scale(Z, w, mu, np.ones(n)))


@given(bigram_counts(max_vocab=5, square=True), weight_decays(1e-3, 2.0))
def test_tied_factored_bigram_equilibrium_matches_trained_model(counts, lam):
    """One shared matrix E decayed once by λ: (λ/2)‖E‖² = (λ/2) tr Z."""
    C = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    C = C.astype(np.float64)
    Q, w = (C / C.sum(1, keepdims=True)).T, C.sum(1) / C.sum()
    eq = factored_bigram_equilibrium(counts, lam=lam, tied=True)
    trained, Z = ref.fit_tied(Q, w, lam, width=Q.shape[0] + 1)
    lam_t = lam / 2
    lower = ref.certified_lower_bound_tied(Z, Q, w, lam_t)
    _check(eq.objective, eq.gap, trained, lower, _scale(Z, w, lam_t, np.ones(Z.shape[1])))


# Degenerate data first found by the properties above (the solver used to crash on both):
# when every row of counts is uniform the optimum is Z = 0 and the gradient there is 0;
# a single context makes the dual-norm matrix 1 × 1.
@pytest.mark.parametrize("tied", [False, True])
def test_uniform_rows(tied):
    eq = factored_bigram_equilibrium(np.array([[1, 1], [1, 1]]), lam=1.0, tied=tied)
    assert abs(eq.objective - np.log(2)) <= 64 * EPS  # Z = 0: CE of uniform predictions


def test_single_context():
    import warnings

    # μ = 0.5 exceeds ‖∇f(0)‖₂ = ‖p − q‖ = √(0.25² + 0.25²) ≈ 0.354, so Z = 0 is optimal
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        eq = factored_bigram_equilibrium(np.array([[1, 3]]), 0.5, 0.5)
    assert abs(eq.objective - np.log(2)) <= 64 * EPS
