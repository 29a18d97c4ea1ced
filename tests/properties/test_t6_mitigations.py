"""T6: frequency-scaled decay (and 1/π loss reweighting) equalises κ, hence margins.

Checked on margin_law (numeric solver), on an independent scipy L-BFGS solve of the
deterministic bigram with per-context decay, and for AdamW with λ_k ∝ ρ_k; the common
value comes from the symbolic κ = r²/λ₀ (L2) and m = 2r/λ₀ (AdamW, ε → 0).
"""

import numpy as np
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize
from scipy.special import log_softmax, softmax

from imbalance.symbolic import adamw as A
from imbalance.symbolic import mitigation as M
from imbalance.testing import frequency_vectors, weight_decays
from imbalance.theory import margin_law

from ._tol import EPS

radii = st.floats(0.1, 5.0, allow_nan=False, allow_subnormal=False)
KAPPA = sp.lambdify([M.r, M.lam0], M.scaled_decay_kappa(), "numpy")
ADAMW_M = sp.lambdify([M.r, M.lam0], M.scaled_decay_adamw_margin(), "numpy")
RHO = sp.lambdify([A.P, A.B], A.deterministic_rho(), "numpy")


def _margin_from_kappa(kappa, K):
    # root of m(eᵐ + K − 1) = K κ in log form (independent of imbalance.theory)
    def g(m):
        return np.log(m) + m + np.log1p((K - 1) * np.exp(-m)) - np.log(K * kappa)

    return brentq(g, 1e-300, np.log(K * kappa) + 2 if K * kappa > 1 else 1.0, xtol=1e-300, rtol=4 * EPS, maxiter=500)


@given(frequency_vectors(max_size=32, max_ratio=1e6), weight_decays(1e-3, 10.0), radii)
def test_scaled_decay_equalises_l2_margins(pi, lam0, r):
    K = pi.size
    res = margin_law(pi, lam0 * pi, r=r)   # row i: decay λ₀ π_i for every context
    m = np.diag(res.margins)                # context k under its own decay λ₀ π_k
    m_star = _margin_from_kappa(KAPPA(r, lam0), K)
    # κ_k = π_k r²/(λ₀ π_k) is r²/λ₀ up to a few ulps; dlog m/dlog κ ≤ 1
    np.testing.assert_allclose(m, m_star, rtol=64 * EPS * K, atol=0)


@given(frequency_vectors(min_size=2, max_size=6, max_ratio=1e3), weight_decays(1e-2, 10.0), radii,
       st.sampled_from(["scaled-decay", "reweighted-loss"]))
def test_equal_margins_with_generic_optimiser(pi, lam0, r, scheme):
    # Σ_k c_k π_k CE(r w_k, k) + Σ_k (λ_k/2)‖w_k‖², either λ_k = λ₀ π_k (c = 1) or c_k = 1/π_k, λ_k = λ₀
    K = pi.size
    c = np.ones(K) if scheme == "scaled-decay" else 1 / pi
    lam = lam0 * pi if scheme == "scaled-decay" else np.full(K, lam0)

    def f(x):
        W = x.reshape(K, K)                     # row k: output weights of context k
        logp = log_softmax(r * W, axis=1)
        P = np.exp(logp)
        wts = c * pi
        val = -(wts * np.diag(logp)).sum() + (lam / 2 * (W * W).sum(1)).sum()
        grad = wts[:, None] * r * (P - np.eye(K)) + lam[:, None] * W
        return val, grad.ravel()

    res = minimize(f, np.zeros(K * K), jac=True, method="L-BFGS-B",
                   options=dict(maxiter=20000, gtol=1e-14, ftol=1e-16))
    W = res.x.reshape(K, K)
    g = f(res.x)[1].reshape(K, K)
    off = (W.sum(1) - np.diag(W)) / (K - 1)
    m = r * (np.diag(W) - off)
    # block k is λ_k-strongly convex: ‖δw_k‖ ≤ ‖g_k‖/λ_k and |δm_k| ≤ 2 r ‖δw_k‖
    err = 2 * r * np.linalg.norm(g, axis=1) / lam + 64 * EPS * np.abs(m)
    m_star = _margin_from_kappa(KAPPA(r, lam0), K)
    assert np.all(np.abs(m - m_star) <= err + 64 * EPS * m_star)


@given(frequency_vectors(max_size=32, max_ratio=1e6), weight_decays(1e-3, 10.0), radii, st.integers(1, 4096))
def test_rho_scaled_decay_equalises_adamw_margins(pi, lam0, r, B):
    rho = RHO(pi, B)
    res = margin_law(pi, lam0 * rho, r=r, optimizer="adamw", batch_size=B, eps=0.0)
    np.testing.assert_allclose(np.diag(res.margins), ADAMW_M(r, lam0), rtol=64 * EPS, atol=0)


@given(frequency_vectors(min_size=2, max_size=32, max_ratio=1e6), weight_decays(1e-3, 10.0), radii)
def test_uniform_decay_orders_margins_by_frequency(pi, lam, r):
    # contrast: with one λ the margin is increasing in π_k (κ_k ∝ π_k), strictly where π differs
    # by more than rounding, so the equalisation above is a property of the scaling
    res = margin_law(pi, lam, r=r)
    order = np.argsort(pi, kind="stable")
    m, p = res.margins[order], pi[order]
    distinct = np.diff(p) > 1e3 * EPS * p[1:]
    assert np.all(np.diff(m)[distinct] > 0)


@given(frequency_vectors(min_size=2, max_size=16, max_ratio=1e3), st.floats(1e-4, 1e-2), st.integers(1, 512),
       st.sampled_from([1e-8, 1e-6]))
def test_frequency_scaled_decay_equalises_adamw_margins_when_eps_dominates(pi, lam0, B, eps):
    # Finding (T3/T6): when √E[g²] ≪ ε the AdamW margin solves m eᵐ ≈ K r² P/(λ ε), so the decay
    # that equalises it is λ_k = λ₀ P_k (not ρ-scaling): m_k ≈ W(K r²/(λ₀ ε)) for every k.
    # Neglected: relative terms s·a/ε' (gradient scale vs ε) and (K − 1)e^{−m}; since
    # dm/dlog(RHS) = m/(1 + m) ≤ 1 the margin error is at most their sum (factor 2 for second order).
    from scipy.special import lambertw

    K, r = pi.size, 1.0
    m = np.diag(margin_law(pi, lam0 * pi, r=r, optimizer="adamw", batch_size=B, eps=eps).margins)
    m_w = float(lambertw(K * r * r / (lam0 * eps)).real)
    s = np.sqrt(pi * (1 + (B - 1) * pi) / B)
    a = (K - 1) * np.exp(-m) / (1 + (K - 1) * np.exp(-m))
    neglected = s * a / (eps / r) + (K - 1) * np.exp(-m)
    assert np.all(neglected < 0.3)  # inside the regime for these ranges
    assert np.all(np.abs(m - m_w) <= 2 * neglected + 64 * EPS * m_w)


BALANCED_P = sp.lambdify([list(M.balanced_bayes_predictor(4)["q"]), list(M.balanced_bayes_predictor(4)["pi"])],
                         M.balanced_bayes_predictor(4)["p"], "numpy")


@given(frequency_vectors(min_size=4, max_size=4, max_ratio=1e3), frequency_vectors(min_size=4, max_size=4,
                                                                                      max_ratio=1e3))
def test_balanced_bayes_predictor_with_generic_optimiser(q, pi):
    """T6c: the minimiser of Σ_v (q_v/π_v)(−log p_v) over the simplex (L-BFGS on free logits,
    independent of the symbolic Lagrange solution) is the τ = 1 adjustment of q."""
    c = q / pi

    def f(z):
        lp = log_softmax(z)
        return -(c * lp).sum(), -(c - c.sum() * np.exp(lp))

    res = minimize(f, np.zeros(4), jac=True, method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 0, "maxiter": 10000})
    p_opt = softmax(res.x)
    p_sym = np.asarray(BALANCED_P(list(q), list(pi)), dtype=np.float64)
    p_adj = softmax(np.log(q) - np.log(pi))  # post-hoc adjustment of the CE Bayes predictor, τ = 1
    assert np.allclose(p_sym, p_adj, rtol=1e-12, atol=0)
    # f is strictly convex in p on the simplex: the optimiser's point is never below the minimum,
    # up to rounding of f: each p_v carries a few ulps of relative error, so |δf| ≤ Σ_v c_v·16 ε.
    # At the optimiser's stopping gradient g = ‖c − Σc p‖∞, p is within g/(Σc min p*) of p*
    # per coordinate (up to a factor 10 for the curvature c/p² of f along the simplex)
    f_sym, f_opt = -(c * np.log(p_sym)).sum(), -(c * np.log(p_opt)).sum()
    assert f_sym <= f_opt + 16 * EPS * c.sum()
    grad = np.abs(c - c.sum() * p_opt).max()
    assert np.abs(p_opt - p_sym).max() <= 10 * grad / c.sum() / p_sym.min() + 1e-12
