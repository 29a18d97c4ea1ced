"""The shared closed forms (imbalance.formulas) against their independent sympy derivations,
lambdified: each symbolic expression is derived from the model (gradient moments, the
stationarity condition, a Lagrangian), not typed in."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax

from imbalance.formulas import adamw_rho, kappa, logit_adjustment, unigram_large_lambda, unigram_small_lambda
from imbalance.symbolic import adamw, bigram, mitigation, unigram
from imbalance.testing.strategies import frequency_vectors

EPS = np.finfo(float).eps


def _rho_symbolic():
    rho = adamw.deterministic_rho()
    P, B = sp.Symbol("P", positive=True), sp.Symbol("B", integer=True, positive=True)
    return sp.lambdify((P, B), rho, "numpy")


RHO = _rho_symbolic()
_KAPPA = bigram.bigram_fixed_point(2)["kappa"]
KAPPA = sp.lambdify(sorted(_KAPPA.free_symbols, key=str), _KAPPA, "numpy")  # (P, lambda, r)


@given(st.lists(st.floats(1e-12, 1.0), min_size=1, max_size=20), st.integers(1, 10**6))
def test_adamw_rho_is_the_derived_signal_to_noise_ratio(pi, B):
    pi = np.array(pi)
    # a handful of roundings in a square root of a ratio: 8 ulps
    np.testing.assert_allclose(adamw_rho(pi, B), RHO(pi, float(B)), rtol=8 * EPS, atol=0)


def test_adamw_rho_limits():
    # Bπ ≪ 1: ρ ≈ √(Bπ); a class in every sample (π = 1): ρ = 1; absent (π = 0): ρ = 0
    assert adamw_rho(0.0, 64) == 0.0 and adamw_rho(1.0, 64) == 1.0
    np.testing.assert_allclose(adamw_rho(1e-9, 64), np.sqrt(64e-9), rtol=1e-6)


@given(st.floats(0.0, 1.0), st.floats(1e-6, 1e3), st.floats(1e-3, 1e3))
def test_kappa_is_the_derived_bigram_kappa(P, lam, r):
    np.testing.assert_allclose(kappa(P, lam, r), KAPPA(P, lam, r), rtol=4 * EPS, atol=0)


def test_kappa_is_lambda_leading():
    out = kappa([0.5, 0.25, 0.25], [1.0, 2.0], r=2.0)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[1], [1.0, 0.5, 0.5])


@given(frequency_vectors(max_size=5, max_ratio=1e3), st.floats(0.0, 3.0))
def test_logit_adjustment_matches_the_symbolic_adjusted_softmax(pi, tau):
    pi = pi / pi.sum()
    K = pi.size
    z = np.linspace(-1.0, 1.0, K)
    zs, ps, ts = sp.symbols(f"z1:{K + 1}"), sp.symbols(f"pi1:{K + 1}", positive=True), sp.Symbol("tau")
    f = sp.lambdify((zs, ps, ts), mitigation.logit_adjusted(zs, ps, ts), "numpy")
    np.testing.assert_allclose(softmax(z + logit_adjustment(pi, tau)), f(z, pi, tau), rtol=1e-12, atol=0)


@pytest.mark.parametrize("K", [2, 3])
def test_logit_adjustment_at_tau_one_gives_the_balanced_bayes_predictor(K):
    sol = mitigation.balanced_bayes_predictor(K)
    f = sp.lambdify((sol["q"], sol["pi"]), sol["p"], "numpy")
    rng = np.random.default_rng(K)
    for _ in range(5):
        q, pi = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K))
        # the Bayes predictor of the cross-entropy is q itself: adjust its logits log q
        np.testing.assert_allclose(softmax(np.log(q) + logit_adjustment(pi, 1.0)), f(q, pi), rtol=1e-12)


def test_logit_adjustment_unseen_tokens():
    with pytest.raises(ValueError, match="pi"):
        logit_adjustment([1.0, 0.0], 1.0)
    out = logit_adjustment([3.0, 1.0, 0.0], 2.0, unseen="rarest")
    assert out[2] == out[1] == -2 * np.log(0.25)
    assert (logit_adjustment([1.0, 0.0], 0.0) == 0).all()  # τ = 0: no adjustment, π = 0 allowed


@pytest.mark.parametrize("K", [2, 3])
def test_unigram_small_lambda_matches_implicit_differentiation(K):
    pis, _, _ = unigram.unigram_symbols(K)
    f_b0 = sp.lambdify([pis], unigram.unigram_small_lam_limit(K), "numpy")
    # derived by implicit differentiation of λ b + softmax(b) − π = 0 with π_K = 1 − Σ_{k<K} π_k
    f_d = sp.lambdify([pis], unigram.unigram_first_order_shift(K), "numpy")
    rng = np.random.default_rng(K)
    for _ in range(3):
        pi = rng.dirichlet(np.ones(K))
        b0, slope = unigram_small_lambda(pi)
        np.testing.assert_allclose(b0, f_b0(pi), rtol=0, atol=64 * EPS * np.abs(np.log(pi)).max())
        np.testing.assert_allclose(slope, f_d(pi), rtol=1e-9, atol=1e-9 * np.abs(slope).max())


@pytest.mark.parametrize("K", [2, 3])
def test_unigram_large_lambda_is_the_leading_series_term(K):
    pis, _, _ = unigram.unigram_symbols(K)
    series = unigram.unigram_large_lam_series(K, order=1)  # ε (π_k − 1/K) + O(ε²), ε = 1/λ
    f = sp.lambdify([pis, unigram.eps], series, "numpy")
    pi = np.random.default_rng(K).dirichlet(np.ones(K))
    for lam in (10.0, 1e3):
        np.testing.assert_allclose(unigram_large_lambda(pi, lam), f(pi, 1 / lam), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("call,name", [
    (lambda: adamw_rho([0.1], -3), "batch_size"), (lambda: adamw_rho([1.5], 4), "pi"),
    (lambda: adamw_rho([np.nan], 4), "pi"), (lambda: kappa([0.1], 0.0), "lam"), (lambda: kappa([0.1], 1.0, r=-1), "r"),
    (lambda: logit_adjustment([1.0, 1.0], -1.0), "tau"), (lambda: logit_adjustment([1.0], 1.0, unseen="x"), "unseen"),
    (lambda: unigram_small_lambda([1.0, 0.0]), "pi"), (lambda: unigram_large_lambda([0.5, 0.5], np.inf), "lam"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
