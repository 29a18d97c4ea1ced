"""T1 properties of unigram_equilibrium, each derived before it is tested.

At the minimiser, λ b_k + p_k = π_k with p_k = C e^{b_k} (C = 1/Σe^b), i.e. π_k = f(b_k)
for the single increasing function f(b) = λ b + C eᵇ, f'(b) = λ + C eᵇ. Hence:
  (ordering)   π_i > π_j ⇒ (π_i − π_j)/(λ + p_i) ≤ b_i − b_j ≤ (π_i − π_j)/(λ + p_j)  (mean value thm);
  (sign)       p − π = −λ b, so along decreasing π its sign goes −, …, 0, …, + exactly once;
  (large λ)    |λ b_k − (π_k − 1/K)| = |p_k − 1/K| ≤ (e^{span b} − 1)/K, span b ≤ (π_max − π_min)/λ;
  (small λ)    span b ≤ span b⁰ (the most frequent token has p ≤ π, the rarest p ≥ π), so
               |b_k| ≤ S := span b⁰ and |log(p_k/π_k)| = |log(1 − λ b_k/π_k)| ≤ −log(1 − λS/π_min),
               hence ‖b − b⁰‖∞ ≤ −2 log(1 − λ S/π_min) when λ S < π_min.
  (p/π)       p_k/π_k = 1/(1 + (λ/C) b_k e^{−b_k}) and b e^{−b} rises for b < 1, falls for b > 1;
               b is increasing in π, so along decreasing π, p/π rises while b ≤ 1 and falls
               while b ≥ 1: it is *not* monotone in rank when some b_k > 1 (proofs/T1_unigram.md),
               and this is the exact shape.
"""

import functools

import mpmath as mp
import numpy as np
import sympy as sp
from hypothesis import assume, given
from hypothesis import strategies as st

from imbalance.symbolic import unigram as U
from imbalance.testing import frequency_vectors, weight_decays
from imbalance.theory import unigram_equilibrium

from ._reference import softmax
from ._tol import EPS


@functools.cache
def _symbolic(K, name):
    """Lambdified T1 closed form ``name`` for K classes: b⁰ or d as functions of π."""
    pis, _, _ = U.unigram_symbols(K)
    expr = U.unigram_small_lam_limit(K) if name.startswith("b0") else U.unigram_first_order_closed_form(K)
    return sp.lambdify([pis], expr, "mpmath" if name.endswith("_mp") else "numpy")


def _b_tol(b, lam, K):
    # the solver's b carries a few ulps of max(|b|, 1/λ·ulp(π)); 64 ulps covers K ≤ 64 summands
    return 64 * EPS * (np.abs(b).max() + 1.0)


@given(frequency_vectors(max_ratio=1e8), weight_decays(1e-6, 1e3))
def test_stationarity_and_zero_sum(pi, lam):
    eq = unigram_equilibrium(pi, lam)
    b, K = eq.logits, pi.size
    p = softmax(b)  # computed here, not taken from the solver
    # residual λb + p − π: rounding in b (δb ≤ tol_b) moves λb by λ δb and p_k by ≤ 2 p_k δb,
    # plus (K + 4) ulps from evaluating the softmax and the sum
    tol_b = _b_tol(b, lam, K)
    resid = lam * b + p - pi / pi.sum()
    assert np.all(np.abs(resid) <= (lam + 2 * p) * tol_b + (K + 4) * EPS), np.abs(resid).max()
    assert abs(b.sum()) <= K * tol_b
    np.testing.assert_allclose(eq.probs, p, rtol=0, atol=2 * tol_b + (K + 4) * EPS)


@given(frequency_vectors(max_ratio=1e8), weight_decays(1e-6, 1e3))
def test_logits_ordered_with_mean_value_bounds(pi, lam):
    eq = unigram_equilibrium(pi, lam)
    pi = pi / pi.sum()
    order = np.argsort(-pi, kind="stable")
    b, p, d_pi = eq.logits[order], eq.probs[order], -np.diff(pi[order])  # d_pi >= 0
    db = -np.diff(b)
    tol = 2 * _b_tol(eq.logits, lam, pi.size) + 4 * EPS * d_pi / (lam + p[1:])
    assert np.all(db >= d_pi / (lam + p[:-1]) - tol)
    assert np.all(db <= d_pi / (lam + p[1:]) + tol)


@given(frequency_vectors(max_ratio=1e8), weight_decays(1e-6, 1e3))
def test_p_minus_pi_changes_sign_once_along_ranks(pi, lam):
    eq = unigram_equilibrium(pi, lam)
    pi = pi / pi.sum()
    order = np.argsort(-pi, kind="stable")
    diff = (eq.probs - pi)[order]
    tol = (lam + 1) * _b_tol(eq.logits, lam, pi.size) + 4 * EPS
    signs = np.sign(np.where(np.abs(diff) > tol, diff, 0.0))
    nonzero = signs[signs != 0]
    assert np.all(np.diff(nonzero) >= 0)  # −…− then +…+
    # if π is not uniform, b has span ≥ (π_max − π_min)/(λ + 1) > 0 and Σ b = 0: both signs occur
    if (pi.max() - pi.min()) * lam / (lam + 1) / 2 > tol:
        assert nonzero[0] < 0 < nonzero[-1]


@given(frequency_vectors(max_ratio=1e4), weight_decays(1.0, 1e6))
def test_large_lambda_limit_bound(pi, lam):
    eq = unigram_equilibrium(pi, lam)
    pi = pi / pi.sum()
    K = pi.size
    bound = np.expm1((pi.max() - pi.min()) / lam) / K
    tol = (lam + 2) * _b_tol(eq.logits, lam, K) + 4 * EPS
    assert np.all(np.abs(lam * eq.logits - (pi - 1.0 / K)) <= bound + tol)


@given(frequency_vectors(max_ratio=1e4), st.floats(1e-9, 0.5))
def test_small_lambda_limit_bound(pi, frac):
    pi = pi / pi.sum()
    K = pi.size
    b0 = np.array(_symbolic(K, "b0")(pi), dtype=float)
    S = b0.max() - b0.min()
    assume(S > 0)
    lam = frac * pi.min() / S  # λ S / π_min = frac < 1
    eq = unigram_equilibrium(pi, lam)
    bound = -2 * np.log1p(-frac)
    # b0 from log π carries ~K ulps of max|log π|
    tol = _b_tol(eq.logits, lam, K) + 4 * K * EPS * np.abs(np.log(pi)).max()
    assert np.abs(eq.logits - b0).max() <= bound + tol


@given(frequency_vectors(max_size=6, max_ratio=1e3))
def test_first_order_shift_at_50_digits(pi):
    # (b(λ) − b⁰)/λ → d: the remainder (b(λ) − b⁰ − λd)/λ is O(λ), so one decade of λ
    # must shrink it ~10x (ratio in [0.05, 0.2]); a wrong d would leave it O(1).
    # Reference: the symbolic Wright-omega closed form evaluated at 50 digits.
    from tests.symbolic._mp import unigram_mp

    pi = pi / pi.sum()
    assume(pi.max() - pi.min() > 1e-6)
    K = pi.size
    f_b0, f_d = _symbolic(K, "b0_mp"), _symbolic(K, "d_mp")
    errs = []
    lam0 = 1e-4 * pi.min() ** 2  # deep in the asymptotic regime λ ≪ π_min²
    for lam in (lam0, lam0 / 10):
        b, _, pi_mp = unigram_mp(pi, lam)
        with mp.workdps(50):
            b0, d = f_b0(pi_mp), f_d(pi_mp)
            errs.append(max(abs(bk - b0k - lam * dk) for bk, b0k, dk in zip(b, b0, d)) / lam)
    assert 0.05 * errs[0] <= errs[1] <= 0.2 * errs[0], errs


@given(frequency_vectors(max_ratio=1e8), weight_decays(1e-6, 1e3))
def test_p_over_pi_shape_along_ranks(pi, lam):
    eq = unigram_equilibrium(pi, lam)
    pi = pi / pi.sum()
    order = np.argsort(-pi, kind="stable")
    b, ratio = eq.logits[order], (eq.probs / pi)[order]
    # p/π carries ~ (|b| + 1)·tol_b relative error from b (and the solver's p, 1e-9 documented)
    tol = (2 * _b_tol(eq.logits, lam, pi.size) * (1 + np.abs(b).max()) + 2e-9) * ratio
    step = np.diff(ratio)
    low = (b[:-1] <= 1) & (b[1:] <= 1)
    high = (b[:-1] >= 1) & (b[1:] >= 1)
    assert np.all(step[low] >= -(tol[:-1] + tol[1:])[low])
    assert np.all(step[high] <= (tol[:-1] + tol[1:])[high])
