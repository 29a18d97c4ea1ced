"""T2 derivations (one-hot bigram, L2)."""

import mpmath as mp
import pytest
import sympy as sp

from imbalance.symbolic import bigram as Bg

from ._mp import margin_mp


@pytest.mark.parametrize("K", [2, 3, 4])
def test_fixed_point_from_gradient(K):
    out = Bg.bigram_fixed_point(K)
    assert out["residual"] == [0] * K
    assert sp.simplify(out["kappa"] - Bg.P * Bg.r**2 / Bg.lam) == 0


@pytest.mark.parametrize("K", [2, 3, 7, 50])
def test_margin_equation_from_symmetric_fixed_point(K):
    out = Bg.deterministic_margin_equation(K)
    assert out["check"] == 0
    assert sp.simplify(out["kappa_prime"] * (K - 1) - K * Bg.kappa) == 0


def test_margin_map_is_increasing_so_threshold_is_iff():
    # d/dm [m(eᵐ + K − 1)] = eᵐ(1 + m) + K − 1 > 0 for m ≥ 0, K ≥ 2
    K = sp.Symbol("K", integer=True, positive=True)
    m = sp.Symbol("m", nonnegative=True)
    deriv = sp.diff(m * (sp.exp(m) + K - 1), m)
    assert sp.simplify(deriv - (sp.exp(m) * (1 + m) + K - 1)) == 0
    assert (deriv.subs(K, sp.Symbol("k", positive=True) + 1)).is_positive


def test_learned_threshold_puts_p_at_one_half():
    # at π = π*, m = log(K − 1) solves the margin equation and p_k = eᵐ/(eᵐ + K − 1) = 1/2
    K = sp.Symbol("K", integer=True, positive=True)
    pi_star = Bg.learned_threshold()
    kappa = pi_star * Bg.r**2 / Bg.lam
    mm = sp.log(K - 1)
    assert sp.simplify(mm * (sp.exp(mm) + K - 1) - K * kappa) == 0
    assert sp.simplify(sp.exp(mm) / (sp.exp(mm) + K - 1) - sp.Rational(1, 2)) == 0


@pytest.mark.parametrize("K", [3, 10, 1000])
def test_learned_threshold_exact_at_50_digits(K):
    # π slightly above π* ⇒ p_k > 1/2, slightly below ⇒ p_k < 1/2 (relative offset 1e-30)
    f = sp.lambdify([sp.Symbol("K", integer=True, positive=True), Bg.r, Bg.lam], Bg.learned_threshold(), "mpmath")
    with mp.workdps(50):
        r, lam = mp.mpf("0.7"), mp.mpf("0.013")
        pi_star = f(K, r, lam)
        for sign in (+1, -1):
            pi = pi_star * (1 + sign * mp.mpf(10) ** -30)
            m = margin_mp(K * pi * r**2 / lam, K)
            pk = mp.exp(m) / (mp.exp(m) + K - 1)
            assert (pk - mp.mpf(1) / 2) * sign > 0


@pytest.mark.parametrize("K", [2, 5, 100])
def test_large_kappa_asymptotics(K):
    out = Bg.large_kappa_margin(K)
    # the two-term form is the Newton step to leading order: their gap is O(W³/c²)
    lead, two, loss_lead = (sp.lambdify(Bg.kappa, out[k], "mpmath") for k in ("leading", "two_term", "loss_leading"))
    errs_lead, errs_two, loss_ratio = [], [], []
    with mp.workdps(50):
        for kap in (mp.mpf(10) ** 4, mp.mpf(10) ** 6, mp.mpf(10) ** 8):
            m = margin_mp(K * kap, K)
            errs_lead.append(abs(m - lead(kap)))
            errs_two.append(abs(m - two(kap)))
            loss_ratio.append(mp.log(1 + (K - 1) * mp.exp(-m)) / loss_lead(kap))
    assert all(e2 < e1 for e1, e2 in zip(errs_lead, errs_two))  # correction helps
    assert errs_lead[2] < errs_lead[1] < errs_lead[0]  # m − W(c) → 0
    assert errs_two[2] < 1e-3 * errs_two[0]  # two-term error O((log c)³/c²): falls ≥ 1e-3 over 4 decades
    assert abs(loss_ratio[2] - 1) < abs(loss_ratio[0] - 1) and abs(loss_ratio[2] - 1) < 1e-6
