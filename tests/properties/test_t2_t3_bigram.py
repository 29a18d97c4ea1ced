"""T2 (bigram, L2) and T3 (AdamW) properties of bigram_equilibrium / margin_law.

The symbolic side supplies κ = P r²/λ, the margin equation, the learned threshold, the
gradient moments E[g], E[g²] (derived from the sampling model) and 2rρ/λ; they are
lambdified here and compared with the numeric solvers, which never see them.
"""

import functools

import numpy as np
import sympy as sp
from hypothesis import assume, given
from hypothesis import strategies as st

from imbalance.symbolic import adamw as A
from imbalance.symbolic import bigram as Bg
from imbalance.testing import bigram_counts, frequency_vectors, weight_decays
from imbalance.theory import bigram_equilibrium, margin_law

from ._reference import softmax
from ._tol import EPS

radii = st.floats(0.1, 10.0, allow_nan=False, allow_subnormal=False)
batch_sizes = st.integers(1, 4096)


@functools.cache
def _sym(name):
    if name == "kappa":
        return sp.lambdify([Bg.P, Bg.r, Bg.lam], Bg.bigram_fixed_point(2)["kappa"], "numpy")
    if name == "threshold":
        return sp.lambdify([sp.Symbol("K", integer=True, positive=True), Bg.r, Bg.lam], Bg.learned_threshold(), "numpy")
    if name == "moments":
        Eg, Eg2 = A.gradient_moments()
        ratio = Eg / (sp.sqrt(Eg2) + A.eps)
        args = [A.P, A.q, A.p, A.r, A.B, A.eps]
        return (sp.lambdify(args, ratio, "numpy"), sp.lambdify(args, sp.diff(ratio, A.p), "numpy"))
    if name == "adamw_margin0":
        return sp.lambdify([A.P, A.B, A.r, A.lam], A.deterministic_adamw_margin(), "numpy")
    if name == "rho":
        return sp.lambdify([A.P, A.B], A.deterministic_rho(), "numpy")
    raise KeyError(name)


def _dense(counts):
    C = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    return C.astype(np.float64)


# ---------------------------------------------------------------- T2
@given(bigram_counts(), weight_decays(1e-3, 10.0), radii)
def test_l2_fixed_point_z_equals_kappa_q_minus_p(counts, lam, r):
    eq = bigram_equilibrium(counts, lam, r=r)
    C = _dense(counts)
    P, q = C.sum(1) / C.sum(), C / C.sum(1, keepdims=True)
    kappa = _sym("kappa")(P, r, lam)[:, None]
    z, p = eq.logits(), eq.probs()
    # z = κ(q − p): each side carries a few ulps of κ(q + p) ≤ 2κ; the solver's p is promised
    # to 1e-9 relative, which moves κ p by ≤ 1e-9 κ p
    tol = 64 * EPS * (np.abs(z) + kappa * (q + p)) + 1e-9 * kappa * p
    assert np.all(np.abs(z - kappa * (q - p)) <= tol)
    np.testing.assert_allclose(p, softmax(z), rtol=1e-9, atol=0)


@given(frequency_vectors(max_size=32, max_ratio=1e6), weight_decays(1e-4, 10.0), radii,
       st.floats(1e-3, 1e3, allow_nan=False, allow_subnormal=False))
def test_loss_depends_only_on_pi_r2_over_lambda(pi, lam, r, s):
    a = margin_law(pi, lam, r=r)
    b = margin_law(pi, lam * s * s, r=r * s)  # same π r²/λ
    # dlog m/dlog κ ≤ 1 and dlog ℓ/dm ≤ 1, so a few ulps in κ move ℓ by ≤ (1 + m)·ulps
    rtol = 64 * EPS * (1 + a.margins)
    assert np.all(np.abs(a.loss_per_token - b.loss_per_token) <= rtol * a.loss_per_token)
    # and through the general solver, at a third scaling, context k ↔ token k
    c = bigram_equilibrium(np.diag(pi), lam / s, r=r / np.sqrt(s))
    np.testing.assert_allclose(c.loss_per_token, a.loss_per_token, rtol=1e-9)  # solver accuracy promise


@given(frequency_vectors(min_size=2, max_size=40, max_ratio=1e6), radii, st.data())
def test_learned_threshold_is_exact(pi, r, data):
    K = pi.size
    j = data.draw(st.integers(0, K - 1))
    u = data.draw(st.floats(0.5, 2.0))
    # put the threshold near π_j: π* = 2(K−1)λ log(K−1)/(K r²)
    lam = u * pi[j] * K * r * r / (2 * (K - 1) * np.log(K - 1)) if K > 2 else u
    res = margin_law(pi, lam, r=r)
    pstar = _sym("threshold")(K, r, lam)
    learned = res.target_prob >= 0.5
    if K == 2:  # π* = 0: every token is learned (m > 0)
        assert pstar == 0 and learned.all()
        return
    # near π*, p − ½ ≈ ¼ · m/(1 + m/2) · (π/π* − 1) with m = log(K − 1); p carries ≲ 64(1 + m) ulps
    m_star = np.log(K - 1)
    slope = 0.25 * m_star / (1 + m_star / 2)
    decided = slope * np.abs(pi / pstar - 1) > 1e3 * EPS * (1 + m_star)
    assert np.array_equal(learned[decided], (pi >= pstar)[decided])


# ---------------------------------------------------------------- T3
@given(bigram_counts(max_contexts=6, max_vocab=6), weight_decays(1e-2, 10.0), radii, batch_sizes,
       st.sampled_from([0.0, 1e-8, 1e-4]))
def test_adamw_stationarity_with_symbolic_moments(counts, lam, r, B, eps):
    eq = bigram_equilibrium(counts, lam, r=r, optimizer="adamw", batch_size=B, eps=eps)
    C = _dense(counts)
    P = np.broadcast_to((C.sum(1) / C.sum())[:, None], C.shape)
    q = C / C.sum(1, keepdims=True)
    p, w = eq.probs(), eq.logits() / r
    ratio, gain = _sym("moments")
    with np.errstate(divide="ignore", invalid="ignore"):
        g = ratio(P, q, p, r, B, eps)
        G = np.abs(gain(P, q, p, r, B, eps))
    # q ∈ {0, 1} and ε = 0: the ratio is exactly −(2q − 1)ρ (T3, deterministic_rho) and flat in p;
    # evaluated in floats it is 0/0 once p rounds to q, so use the symbolic limit there
    det = (q * (1 - q) == 0) & (eps == 0.0)
    g = np.where(det, -(2 * q - 1) * _sym("rho")(P, B), g)
    G = np.where(det, 0.0, G)
    # the solver's p is good to 1e-9 relative (its documented accuracy; observed residuals reach
    # 2.6e-13 at counts [[1, 2]], so a few ulps would be too strict), amplified by the stiff
    # map's gain |∂ratio/∂p|; plus a few ulps of |λ w| ≤ 1 (for q ∈ {0, 1}, ε = 0 the exact
    # answer is |λ w| = ρ, which the solver reproduces to rounding)
    tol = G * 1e-9 * p + 64 * EPS * (1 + np.abs(lam * w))
    assert np.all(np.abs(lam * w + g) <= tol)
    # T4's AdamW analogue: |w| ≤ 1/λ (|E g| ≤ √E g²)
    assert np.all(np.abs(w) <= (1 + 64 * EPS) / lam)


@given(frequency_vectors(max_size=24, max_ratio=1e5), weight_decays(1e-3, 10.0),
       st.floats(0.1, 1.0), batch_sizes)
def test_adamw_equilibrium_is_not_the_l2_minimiser(pi, lam, r, B):
    # strong convexity of J(W) = Σ π ℓ + (λ/2)‖W‖²: J(W_A) − J(W*) ≥ (λ/2)‖W_A − W*‖², and for
    # r ≤ 1 the L2 gradient at W_A is ≥ ρ − rπ > 0 on each target coordinate (ε = 0)
    assume(pi.max() < 1 - 1e-6)
    K = pi.size
    ad = margin_law(pi, lam, r=r, optimizer="adamw", batch_size=B, eps=0.0)
    l2 = margin_law(pi, lam, r=r)
    rho = _sym("rho")(pi, B)
    grad_target = lam * ad.logit_target / r - r * pi * (1 - ad.target_prob)
    assert np.all(np.abs(grad_target) >= (rho - r * pi) - 64 * EPS * (1 + rho))
    assert np.all(rho - r * pi > 0)

    def J(res):
        return res.loss_per_token @ pi + lam / 2 * ((res.logit_target**2 + (K - 1) * res.logit_other**2) / r**2).sum()

    dist2 = (((ad.logit_target - l2.logit_target) ** 2 + (K - 1) * (ad.logit_other - l2.logit_other) ** 2) / r**2).sum()
    gap = J(ad) - J(l2)
    # J is a sum of O(K) terms of size ≤ J: its rounding is ≤ 64 K ulps of J
    assert gap >= lam / 2 * dist2 - 64 * K * EPS * (J(ad) + J(l2))
    assert dist2 > 0


@given(frequency_vectors(max_size=24, max_ratio=1e4), radii, batch_sizes, st.floats(0.2, 5.0))
def test_adamw_eps_to_zero_first_order(pi, r, B, m0_target):
    # m0 = 2rρ/λ; choose λ so m0 is moderate (the ε → 0 limit is not uniform in m0)
    K = pi.size
    rho = _sym("rho")(pi, B)
    lam = 2 * r * rho.min() / m0_target
    m0 = _sym("adamw_margin0")(pi, B, r, lam)
    eps = 1e-10
    m = margin_law(pi, lam, r=r, optimizer="adamw", batch_size=B, eps=eps).margins
    # first order in ε' = ε/r: m0 − m = (r P K ε')/(λ s² a), s² = P(1 + (B−1)P)/B, a = 1 − p_k
    s2 = pi * (1 + (B - 1) * pi) / B
    a = (K - 1) / (np.exp(m) + K - 1)
    first = r * pi * K * (eps / r) / (lam * s2 * a)
    # neglected terms are O(ε'(K−1)/(√s² a)) relative; m itself carries ~64 ulps of m0
    rel = 4 * (eps / r) * (K - 1) / (np.sqrt(s2) * a)
    assert np.all(m <= m0)
    assert np.all(np.abs((m0 - m) - first) <= rel * first + 64 * EPS * m0)
