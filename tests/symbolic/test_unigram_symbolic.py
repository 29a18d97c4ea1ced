"""T1 derivations: every algebraic step of proofs/T1 that sympy can check."""

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from imbalance.symbolic import unigram as U

from ._mp import unigram_mp


@pytest.mark.parametrize("K", [2, 3, 5])
def test_stationarity_sums_to_lambda_sum_b(K):
    # Σ_k ∂L/∂b_k = λ Σ b_k once Σπ = 1, so Σ b = 0 at any stationary point
    pi, b, lam = U.unigram_symbols(K)
    total = sp.Add(*U.unigram_stationarity(K)).subs(pi[-1], 1 - sp.Add(*pi[:-1]))
    assert sp.simplify(total - lam * sp.Add(*b)) == 0


@pytest.mark.parametrize("K", [2, 3, 4])
def test_omega_form_makes_b_minus_log_p_constant(K):
    # p = λ ω(π/λ − t), b = (π − p)/λ ⇒ b_k − log p_k = t − log λ for every k
    sol = U.unigram_omega_solution(K)
    assert sol["log_odds_gap"] == [0] * (K - 1)
    from imbalance.symbolic._common import omega_log_rule
    pi, _, lam = U.unigram_symbols(K)
    shift = omega_log_rule(sp.expand_log(sol["b"][0] - sp.log(sol["p"][0]), force=True))
    assert sp.simplify(shift - (U.t - sp.log(lam))) == 0


def test_wright_omega_derivative_matches_implicit_function():
    # ω' = ω/(1 + ω) from ω + log ω = x; compare with a central difference at 40 digits
    x = sp.Symbol("x", real=True)
    omega = {"wright_omega": lambda v: mp.lambertw(mp.exp(v)).real}
    dw = sp.lambdify(x, U.wright_omega(x).diff(x), modules=[omega, "mpmath"])
    with mp.workdps(40):
        for x0 in (-3, 0.5, 20):
            num = mp.diff(lambda v: mp.lambertw(mp.exp(v)).real, mp.mpf(x0))
            assert abs(dw(mp.mpf(x0)) - num) < mp.mpf(10) ** -30


@pytest.mark.parametrize("K", [2, 3])  # K = 4 passes too, at several times the cost
def test_first_order_shift_derivation_matches_closed_form(K):
    pi, _, _ = U.unigram_symbols(K)
    sub = {pi[-1]: 1 - sp.Add(*pi[:-1])}
    derived = U.unigram_first_order_shift(K)
    closed = U.unigram_first_order_closed_form(K)
    assert all(sp.simplify(d - c.subs(sub)) == 0 for d, c in zip(derived, closed))


@pytest.mark.parametrize("K", [2, 3])
def test_large_lambda_series_coefficients(K):
    # b_k = (π_k − 1/K) ε − (π_k − 1/K) ε²/K + O(ε³), ε = 1/λ
    pi, _, _ = U.unigram_symbols(K)
    sub = {pi[-1]: 1 - sp.Add(*pi[:-1])}
    series = U.unigram_large_lam_series(K, order=2)
    for k, s in enumerate(series):
        c = (pi[k] - sp.Rational(1, K)).subs(sub)
        assert sp.simplify(sp.expand(s).coeff(U.eps, 1) - c) == 0
        assert sp.simplify(sp.expand(s).coeff(U.eps, 2) + c / K) == 0


PIS = [np.array([0.7, 0.2, 0.1]), np.array([0.5, 0.25, 0.125, 0.0625, 0.0625]),
       np.array([0.97, 0.01, 0.01, 0.005, 0.005])]


@pytest.mark.parametrize("pi", PIS, ids=lambda p: f"K{len(p)}")
def test_small_lambda_limit_and_first_order_term_at_50_digits(pi):
    # b(λ) = b⁰ + λ d + O(λ²): the remainder divided by λ must shrink ~10x per decade of λ
    K = len(pi)
    pis, _, _ = U.unigram_symbols(K)
    f_b0 = sp.lambdify([pis], U.unigram_small_lam_limit(K), modules="mpmath")
    f_d = sp.lambdify([pis], U.unigram_first_order_closed_form(K), modules="mpmath")
    errs = []
    for lam in (1e-6, 1e-7, 1e-8):
        b, _, pi_mp = unigram_mp(pi, lam)
        with mp.workdps(50):
            b0, d = f_b0(pi_mp), f_d(pi_mp)
            errs.append(max(abs(bk - b0k - lam * dk) for bk, b0k, dk in zip(b, b0, d)) / lam)
    assert errs[1] < 0.2 * errs[0] and errs[2] < 0.2 * errs[1], errs  # linear in λ (ratio ≈ 0.1)


@pytest.mark.parametrize("pi", PIS, ids=lambda p: f"K{len(p)}")
def test_large_lambda_expansion_at_50_digits(pi):
    # b(λ) − [(π − 1/K)/λ − (π − 1/K)/(K λ²)] = O(λ⁻³): remainder·λ² shrinks ~10x per decade
    K = len(pi)
    errs = []
    for lam in (1e3, 1e4, 1e5):
        b, _, pi_mp = unigram_mp(pi, lam)
        with mp.workdps(50):
            approx = [(x - mp.mpf(1) / K) / lam - (x - mp.mpf(1) / K) / (K * lam**2) for x in pi_mp]
            errs.append(max(abs(bk - ak) for bk, ak in zip(b, approx)) * lam**2)
    assert errs[1] < 0.2 * errs[0] and errs[2] < 0.2 * errs[1], errs
