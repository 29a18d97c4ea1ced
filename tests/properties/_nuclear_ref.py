"""Generic references for T5/T7, independent of imbalance.theory.

f(Z) = Σ_x w_x CE(q_x, z_x) for logit columns z_x (V × n). Factored problems are solved by
scipy L-BFGS from a seeded random start; convex ones are certified by a duality bound:
for any Z and G = −∇_Y g(Y) (Y = Z D^{1/2}, penalty μ‖Y‖_*, f ≥ 0),
    F* ≥ F(Z) − gap,  gap = μ‖Y‖_* − ⟨G, Y⟩ + (max(μ, ‖G‖₂) − μ) F(Z)/μ,
because ‖Y'‖_* ≥ ⟨S, Y'⟩ for ‖S‖₂ ≤ 1 and μ‖Y*‖_* ≤ F* ≤ F(Z). Tied (Z ⪰ 0, penalty
λ tr Z): gap = λ tr Z − ⟨G_s, Z⟩ + (λ_max(G_s) − λ)₊ F(Z)/λ with G_s = −sym ∇f(Z).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

OPTS = dict(maxiter=50000, maxcor=50, gtol=1e-13, ftol=1e-16)


def _newton_polish(obj, x, steps=30, h=1e-6):
    """Newton steps on ∇F with a central-difference Hessian of the analytic gradient
    (error O(h²) ≈ 1e-12) solved by least squares (the factorised objective is invariant
    under rotations, so the Hessian is singular). A step is kept only if it lowers ‖∇F‖."""
    g = obj(x)[1]
    n = x.size
    for _ in range(steps):
        H = np.empty((n, n))
        for i in range(n):
            e = np.zeros(n)
            e[i] = h
            H[:, i] = (obj(x + e)[1] - obj(x - e)[1]) / (2 * h)
        H = (H + H.T) / 2
        step = np.linalg.lstsq(H, -g, rcond=1e-12)[0]
        gn = obj(x + step)[1]
        if np.linalg.norm(gn) >= np.linalg.norm(g):
            break
        x, g = x + step, gn
    return x


def _minimise(obj, x0):
    """L-BFGS, then Newton on the gradient: L-BFGS's line search stalls once F changes by less
    than its rounding (~1e-17 F), which on weakly curved (rare-class) directions still leaves
    gradients ~1e-7 relative to μ; Newton removes that floor."""
    res = minimize(obj, x0, jac=True, method="L-BFGS-B", options=OPTS)
    x = _newton_polish(obj, res.x)
    return obj(x)[0], x


def ce(Z, Q, w):
    """(f, ∇f) for logits Z (V × n), targets Q (V × n, columns sum to 1), weights w (n,)."""
    logp = log_softmax(Z, axis=0)
    f = -(w * (Q * logp).sum(0)).sum()
    return f, w * (np.exp(logp) - Q)


def nuclear(M):
    return np.linalg.svd(M, compute_uv=False).sum()


def fit_factored(Q, w, lam_a, lam_b, d_weights, width, seed=0):
    """min over A (V×k), Bm (k×n) of f(A Bm) + (λa/2)‖A‖² + (λb/2) Σ_x d_x ‖Bm[:, x]‖².

    Solved in the variables A and C = Bm D^{1/2} (same problem; the penalty becomes
    (λb/2)‖C‖², which keeps L-BFGS well scaled when d_x spans decades). Returns
    (trained value, Z = A Bm).
    """
    V, n = Q.shape
    rng = np.random.default_rng(seed)
    s = np.sqrt(d_weights)

    def obj(x):
        A, Cm = x[: V * width].reshape(V, width), x[V * width:].reshape(width, n)
        f, G = ce(A @ Cm / s, Q, w)
        Gs = G / s
        val = f + lam_a / 2 * (A * A).sum() + lam_b / 2 * (Cm * Cm).sum()
        return val, np.concatenate([(Gs @ Cm.T + lam_a * A).ravel(), (A.T @ Gs + lam_b * Cm).ravel()])

    fun, x = _minimise(obj, 0.1 * rng.standard_normal(V * width + width * n))
    A, Cm = x[: V * width].reshape(V, width), x[V * width:].reshape(width, n)
    return fun, A @ Cm / s


def fit_tied(Q, w, lam, width, seed=0):
    """min over E (k×V) of f(EᵀE) + (λ/2)‖E‖² (contexts = vocabulary; one matrix, one decay)."""
    V = Q.shape[0]
    rng = np.random.default_rng(seed)
    lam_t = lam / 2

    def obj(x):
        E = x.reshape(width, V)
        f, G = ce(E.T @ E, Q, w)
        return f + lam_t * (E * E).sum(), (E @ (G + G.T) + 2 * lam_t * E).ravel()

    fun, x = _minimise(obj, 0.1 * rng.standard_normal(width * V))
    E = x.reshape(width, V)
    return fun, E.T @ E


def convex_value_and_gap(Z, Q, w, mu, d_weights):
    """(F(Z), certified gap) for F(Z) = f(Z) + μ‖Z D^{1/2}‖_*."""
    f, G = ce(Z, Q, w)
    s = np.sqrt(d_weights)
    Y, GY = Z * s, -G / s  # ∇_Y g = ∇f D^{-1/2}
    F = f + mu * nuclear(Y)
    c = max(mu, np.linalg.norm(GY, 2))
    return F, mu * nuclear(Y) - (GY * Y).sum() + (c - mu) * F / mu


def tied_value_and_gap(Z, Q, w, lam_t):
    f, G = ce(Z, Q, w)
    Gs = -(G + G.T) / 2
    F = f + lam_t * np.trace(Z)
    top = np.linalg.eigvalsh(Gs)[-1]
    return F, lam_t * np.trace(Z) - (Gs * Z).sum() + max(top - lam_t, 0.0) * F / lam_t


def fista_nuclear(Q, w, mu, d_weights, iters=20000, tol=1e-13, Z0=None):
    """Accelerated proximal gradient with SVD shrinkage on Y = Z D^{1/2} (generic convex solve),
    from Z0 (default 0)."""
    s = np.sqrt(d_weights)
    L = (w / d_weights).max()  # ∇g is L-Lipschitz: CE Hessian ≤ I per column, scaled by w/d
    Y = Yp = np.zeros_like(Q) if Z0 is None else Z0 * s
    t = 1.0
    prev = np.inf
    for _ in range(iters):
        _, G = ce(Yp / s, Q, w)
        U, sv, Vt = np.linalg.svd(Yp - (G / s) / L, full_matrices=False)
        Yn = (U * np.maximum(sv - mu / L, 0)) @ Vt
        tn = (1 + np.sqrt(1 + 4 * t * t)) / 2
        Yp = Yn + (t - 1) / tn * (Yn - Y)
        Y, t = Yn, tn
        F = ce(Y / s, Q, w)[0] + mu * nuclear(Y)
        if abs(prev - F) <= tol * max(1.0, F):
            break
        prev = F
    return Y / s


def projected_trace(Q, w, lam_t, Z0, iters=2000):
    """Proximal gradient for min_{Z ⪰ 0} f(Z) + λ tr Z from Z0: eigenvalue shrink and clip."""
    L = 2 * w.max()  # the symmetrised gradient is at most twice as stiff as one column's
    Z = (Z0 + Z0.T) / 2
    for _ in range(iters):
        _, G = ce(Z, Q, w)
        ev, U = np.linalg.eigh(Z - (G + G.T) / 2 / L)
        Z = (U * np.maximum(ev - lam_t / L, 0)) @ U.T
    return Z


def certified_lower_bound(Z, Q, w, mu, d_weights):
    """max of F − gap at Z and at a proximal-gradient refinement of Z: a rigorous lower bound
    on the convex minimum. The refinement zeroes singular values the factored solver only
    shrinks slowly (near-degenerate optima, where σ(∇g) is within ~1e-6 of μ)."""
    F, gap = convex_value_and_gap(Z, Q, w, mu, d_weights)
    Fr, gapr = convex_value_and_gap(fista_nuclear(Q, w, mu, d_weights, iters=500, Z0=Z), Q, w, mu, d_weights)
    return max(F - gap, Fr - gapr)


def certified_lower_bound_tied(Z, Q, w, lam_t):
    F, gap = tied_value_and_gap(Z, Q, w, lam_t)
    Fr, gapr = tied_value_and_gap(projected_trace(Q, w, lam_t, Z, iters=500), Q, w, lam_t)
    return max(F - gap, Fr - gapr)
