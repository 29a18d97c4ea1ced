"""T4: ‖w_c‖ ≤ 2 π_c R/λ at the optimum of L2-regularised softmax regression with an
unregularised bias, found by scipy L-BFGS in float64 (independent of imbalance.theory).

At any (W, b), with g_W, g_b the gradient of F = mean CE + (λ/2)‖W‖²:
    λ w_c = E[(1{y=c} − p_c) h] + g_W,c   and   E[p_c] = π_c + g_b,c,
so ‖w_c‖ ≤ (R (2π_c − 2E[1{y=c} p_c] + |g_b,c|) + ‖g_W,c‖)/λ. At the optimum the residual
terms vanish; the test requires them to be tiny (converged) and checks the bound with them.
"""

import numpy as np
import sympy as sp
from hypothesis import given
from scipy.optimize import minimize
from scipy.special import log_softmax

from imbalance.symbolic import features as T4
from imbalance.testing import labelled_features, weight_decays

from ._tol import EPS

_BOUND = sp.lambdify([sp.Symbol("pi_c", positive=True), T4.R, T4.lam], T4.norm_bound(), "numpy")


def _fit(H, y, K, lam, bias=True):
    """L-BFGS on mean CE + Σ_c (λ_c/2)‖w_c‖²; ``lam`` is a scalar or one decay per class row."""
    n, d = H.shape
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), (K,))[:, None]
    Y = np.eye(K)[y]

    def unpack(x):
        W = x[: K * d].reshape(K, d)
        b = x[K * d:] if bias else np.zeros(K)
        return W, b

    def f(x):
        W, b = unpack(x)
        logp = log_softmax(H @ W.T + b, axis=1)
        R = np.exp(logp) - Y  # (n, K)
        gW = R.T @ H / n + lam * W
        grad = np.concatenate([gW.ravel(), R.mean(0)]) if bias else gW.ravel()
        return -(logp * Y).sum() / n + (lam / 2 * W * W).sum(), grad

    x0 = np.zeros(K * d + (K if bias else 0))
    res = minimize(f, x0, jac=True, method="L-BFGS-B",
                   options=dict(maxiter=20000, maxcor=30, gtol=1e-14, ftol=1e-16))
    W, b = unpack(res.x)
    _, g = f(res.x)
    return W, b, g[: K * d].reshape(K, d), (g[K * d:] if bias else None)


@given(labelled_features(max_samples=40, max_dim=5, max_classes=5), weight_decays(1e-2, 10.0))
def test_norm_bound_at_lbfgs_optimum(data, lam):
    H, y, R = data
    K = int(y.max()) + 1
    n = H.shape[0]
    W, b, gW, gb = _fit(H, y, K, lam)
    # converged: the gradient is at the level where float64 stalls (F ≈ O(1), curvature ≥ λ)
    assert np.abs(gW).max() <= 1e-7 and np.abs(gb).max() <= 1e-7, (np.abs(gW).max(), np.abs(gb).max())
    pi = np.bincount(y, minlength=K) / n
    P = np.exp(log_softmax(H @ W.T + b, axis=1))
    Ep_true = np.array([(P[y == c, c]).sum() / n for c in range(K)])  # E[1{y=c} p_c]
    norms = np.linalg.norm(W, axis=1)
    slack = (R * np.abs(gb) + np.linalg.norm(gW, axis=1)) / lam
    rounding = 64 * EPS * (norms + 2 * pi * R / lam)
    tight = R * (2 * pi - 2 * Ep_true) / lam
    assert np.all(norms <= tight + slack + rounding)
    assert np.all(norms <= _BOUND(pi, R, lam) + slack + rounding)
    # the stationarity identity itself: λ w_c = E[(1{y=c} − p_c) h] + g_W,c
    lhs = lam * W
    rhs = ((np.eye(K)[y] - P).T @ H) / n + gW
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=64 * EPS * (1 + np.abs(lhs).max() + R))


def test_bound_fails_without_bias():
    # Regime where T4 fails: no bias, so E[p_c] = π_c is lost. Constant features h = R e₁ make
    # the model the unigram one with λ' = λ/R²; for λ' large p → 1/K, and for the rare class
    # λ ‖w_c‖ = R |π_c − p_c| → R (1/K − π_c), which exceeds 2 π_c R when π_c < 1/(3K).
    R, lam, K = 2.0, 50.0, 2
    y = np.array([0] * 9 + [1])  # π = (0.9, 0.1) < 1/(3K) = 1/6 for class 1
    H = np.tile([[R, 0.0]], (y.size, 1))
    W, _, gW, _ = _fit(H, y, K, lam, bias=False)
    pi1 = 0.1
    # even after removing the residual ‖g_W‖/λ the bound is violated by a wide margin
    assert np.linalg.norm(W[1]) - np.linalg.norm(gW[1]) / lam > 1.5 * _BOUND(pi1, R, lam)


@given(labelled_features(max_samples=40, max_dim=5, max_classes=5), weight_decays(1e-2, 10.0))
def test_frequency_scaled_row_decay_gives_frequency_free_bound(data, lam0):
    # T6 corollary: with λ_c = λ₀ π_c on row c, stationarity gives λ_c w_c = E[(1{y=c} − p_c) h],
    # so ‖w_c‖ ≤ 2 π_c R/λ_c = 2R/λ₀ for every class, rare or not
    H, y, R = data
    K = int(y.max()) + 1
    n = H.shape[0]
    pi = np.bincount(y, minlength=K) / n
    lam = lam0 * pi
    W, b, gW, gb = _fit(H, y, K, lam)
    assert np.abs(gW).max() <= 1e-7 and np.abs(gb).max() <= 1e-7
    norms = np.linalg.norm(W, axis=1)
    slack = (R * np.abs(gb) + np.linalg.norm(gW, axis=1)) / lam
    assert np.all(norms <= 2 * R / lam0 + slack + 64 * EPS * (norms + 2 * R / lam0))


def test_bound_is_nearly_attained():
    # The factor 2 is needed: with h = +R e₁ on class c and −R e₁ elsewhere the residual
    # 1{y=c} − p_c is aligned with h, so λ‖w_c‖ = R E|1{y=c} − p_c| = 2R(π_c − E[1{y=c} p_c]),
    # and for large λ (p_c → π_c) the ratio to 2π_c R/λ tends to 1 − π_c. Here K = 5,
    # π_c = 0.075, λ = 10: the ratio must exceed ½, i.e. a bound π_c R/λ would be false.
    K, lam, R, c = 5, 10.0, 1.0, 4
    y = np.array([0] * 140 + [1, 2, 3] * 15 + [c] * 15)
    H = np.where((y == c)[:, None], [[R, 0.0]], [[-R, 0.0]])
    W, _, gW, gb = _fit(H, y, K, lam)
    pi_c = np.mean(y == c)
    ratio = (np.linalg.norm(W[c]) - np.linalg.norm(gW[c]) / lam) / _BOUND(pi_c, R, lam)
    assert 0.5 < ratio <= 1.0 + 64 * EPS
