"""T3 derivations (AdamW equilibrium of the bigram model)."""

import mpmath as mp
import pytest
import sympy as sp

from imbalance.symbolic import adamw as A

from ._mp import bisect_decreasing


@pytest.mark.parametrize("Bv", [1, 2, 3, 5])
def test_moments_match_binomial_count_model(Bv):
    # N ~ Binomial(B, P) copies of the context in the batch, M | N ~ Binomial(N, q) of them
    # followed by token j; g = (r/B)(N p − M). Exact double sum vs the MGF derivation.
    P, q, p, r = A.P, A.q, A.p, A.r
    Eg = Eg2 = 0
    for n in range(Bv + 1):
        pn = sp.binomial(Bv, n) * P**n * (1 - P) ** (Bv - n)
        for k in range(n + 1):
            pk = sp.binomial(n, k) * q**k * (1 - q) ** (n - k)
            g = r * (n * p - k) / Bv
            Eg += pn * pk * g
            Eg2 += pn * pk * g**2
    mEg, mEg2 = A.gradient_moments()
    assert sp.expand(Eg - mEg) == 0
    assert sp.expand(Eg2 - mEg2.subs(A.B, Bv)) == 0


def test_sympy_stats_binomial_agrees_for_B4():
    from sympy.stats import Binomial, E

    N = Binomial("N", 4, A.P)
    # E[g | N] = r N (p − q)/B and E[g² | N] = r²(N²(p − q)² + N q(1 − q))/B², then average over N
    mu, s2 = A.p - A.q, A.q * (1 - A.q)
    Eg2 = E(A.r**2 * (N**2 * mu**2 + N * s2) / 16)
    assert sp.expand(Eg2 - A.gradient_moments()[1].subs(A.B, 4)) == 0


def test_variance_is_a_sum_of_nonnegative_terms():
    # Var g = r² P ((1 − P) μ² + q(1 − q))/B ≥ 0, zero iff q ∈ {0, 1} and (P = 1 or μ = 0)
    Eg, Eg2 = A.gradient_moments()
    mu = A.p - A.q
    form = A.r**2 * A.P * ((1 - A.P) * mu**2 + A.q * (1 - A.q)) / A.B
    assert sp.simplify(Eg2 - Eg**2 - form) == 0
    a, c = sp.symbols("a c", positive=True)  # P = 1/(1 + a), q = 1/(1 + c) span (0, 1)
    assert form.subs({A.P: 1 / (1 + a), A.q: 1 / (1 + c)}).is_nonnegative


def test_deterministic_rho_and_margin():
    rho = A.deterministic_rho()
    m = A.deterministic_adamw_margin()
    assert sp.simplify(m - 2 * A.r * rho / A.lam) == 0
    # ρ² = Bπ/(1 + (B − 1)π)
    assert sp.simplify(rho**2 - A.B * A.P / (1 + (A.B - 1) * A.P)) == 0
    # ρ = 1 when π = 1, ρ → √(Bπ) as π → 0
    assert sp.simplify(rho.subs(A.P, 1)) == 1
    assert sp.limit(rho / sp.sqrt(A.B * A.P), A.P, 0) == 1


@pytest.mark.parametrize("K,Bv,P", [(4, 8, 0.3), (50, 1, 0.01), (10, 256, 0.002)])
def test_margin_equation_eps_to_zero_limit(K, Bv, P):
    # root of r(w_k(m) − w_j(m)) − m: equals m0 = 2rρ/λ at ε = 0 and approaches it from
    # below as ε → 0 (ε > 0 only shrinks |w|), with gap O(ε). The limit is not uniform
    # (see the next test), so λ is large enough here that m0 ≤ 2r = 2.6.
    eq = A.adamw_margin_equation(K)
    f = sp.lambdify([A.m, A.P, A.B, A.r, A.lam, A.eps], eq, "mpmath")
    target = sp.lambdify([A.P, A.B, A.r, A.lam], A.deterministic_adamw_margin(), "mpmath")
    with mp.workdps(60):
        r, lam = mp.mpf("1.3"), mp.mpf("1.0")
        m0 = target(mp.mpf(P), Bv, r, lam)
        assert abs(f(m0, mp.mpf(P), Bv, r, lam, 0)) < mp.mpf(10) ** -30
        gaps = []
        for e in (mp.mpf(10) ** -6, mp.mpf(10) ** -8, mp.mpf(10) ** -10):
            # f(0) > 0 > f(m0); bisection error m0·2^-200
            root = bisect_decreasing(lambda mm: f(mm, mp.mpf(P), Bv, r, lam, e), 0, m0)
            gaps.append(m0 - root)
        assert all(g > 0 for g in gaps)
        assert 0.005 < gaps[1] / gaps[0] < 0.02 and 0.005 < gaps[2] / gaps[1] < 0.02, gaps  # ≈ 0.01


@pytest.mark.parametrize("K,Bv,P", [(4, 8, 0.3), (50, 1, 0.01)])
def test_eps_dominated_regime_is_l2_like(K, Bv, P):
    # Finding: when the ε → 0 margin m0 = 2rρ/λ is large, the gradient scale √E[g²] ∝ e^{−m}
    # falls below ε before m reaches m0. There Adam acts like SGD with decay λε, and the margin
    # solves m eᵐ = K r² P/(λ ε) (T2's large-κ law with κ = P r²/(λ ε)): m ≈ W(K r² P/(λ ε)).
    # The relative error is O(m/m0), so it must shrink ~10x when λ shrinks 10x.
    eq = A.adamw_margin_equation(K)
    f = sp.lambdify([A.m, A.P, A.B, A.r, A.lam, A.eps], eq, "mpmath")
    target = sp.lambdify([A.P, A.B, A.r, A.lam], A.deterministic_adamw_margin(), "mpmath")
    rel = []
    with mp.workdps(60):
        r, e, Pm = mp.mpf(1), mp.mpf(10) ** -8, mp.mpf(P)
        for lam in (mp.mpf(10) ** -4, mp.mpf(10) ** -5):
            m0 = target(Pm, Bv, r, lam)
            root = bisect_decreasing(lambda mm: f(mm, Pm, Bv, r, lam, e), 0, m0)
            approx = mp.lambertw(K * r**2 * Pm / (lam * e)).real
            assert root < 0.1 * m0  # far below the ε → 0 law
            rel.append(abs(root / approx - 1))
    assert rel[1] < 0.2 * rel[0], rel
