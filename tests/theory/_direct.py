"""Direct training of the factors on the raw (non-convex) objectives.

This is the independent side of every convex-vs-direct check: it never calls the nuclear
solver; it minimises the factored losses of T5/T7 as written, from random initialisations,
with torch float64 autograd for the gradient and scipy's L-BFGS-B as the optimiser (bounds
give the ReLU constraint H ≥ 0 of Dang et al. 2024 exactly).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize


def _train(loss_fn, shapes, rng, scale, bounds_mask=None, rounds=6):
    sizes = [int(np.prod(s)) for s in shapes]
    x = scale * rng.standard_normal(sum(sizes))
    if bounds_mask is not None:
        x = np.where(bounds_mask, np.abs(x), x)

    def fg(v):
        t = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        parts, i = [], 0
        for s, n in zip(shapes, sizes):
            parts.append(t[i:i + n].reshape(s))
            i += n
        val = loss_fn(*parts)
        val.backward()
        return float(val.detach()), t.grad.numpy().copy()

    bounds = None if bounds_mask is None else [(0, None) if m else (None, None) for m in bounds_mask]
    last = np.inf
    for _ in range(rounds):  # restarts refresh the curvature memory; stop when nothing moves
        res = minimize(fg, x, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 20000, "maxcor": 50, "ftol": 0.0, "gtol": 1e-14})
        x = res.x
        if last - res.fun <= 1e-15 * abs(res.fun):
            break
        last = res.fun
    out, i = [], 0
    for s, n in zip(shapes, sizes):
        out.append(x[i:i + n].reshape(s))
        i += n
    return float(res.fun), out


def ufm_direct(pi, lam_w, lam_h, *, bias=False, relu=False, seed=0, width=None, scale=0.1):
    """min Σ_k π_k CE(W h_k + b, k) + (λ_W/2)‖W‖² + (λ_H/2)Σ_k π_k‖h_k‖² over W (K×d), H (d×K)
    (and b); ``relu`` adds H ≥ 0. Returns (value, W, H, b)."""
    K = len(pi)
    d = width or K
    pit = torch.tensor(pi, dtype=torch.float64)

    def loss(W, H, b=None):
        Z = (W @ H).T + (b if b is not None else 0.0)  # (K, K): row k = logits of class-k features
        ce = torch.logsumexp(Z, dim=1) - torch.diagonal(Z)
        return pit @ ce + 0.5 * lam_w * (W * W).sum() + 0.5 * lam_h * (pit * (H * H).sum(0)).sum()

    shapes = [(K, d), (d, K)] + ([(K,)] if bias else [])
    mask = None
    if relu:
        mask = np.concatenate([np.zeros(K * d, bool), np.ones(d * K, bool)] + ([np.zeros(K, bool)] if bias else []))
    val, parts = _train(loss, shapes, np.random.default_rng(seed), scale, mask)
    return val, parts[0], parts[1], (parts[2] if bias else np.zeros(K))


def bigram_direct(counts, lam_w, lam_e, *, tied=False, seed=0, width=None, scale=0.1):
    """min Σ_x P(x) CE(q_x, W e_x) + (λ_W/2)‖W‖² + (λ_E/2)‖E‖², W (V×d), E (d×n); tied: W = Eᵀ,
    one matrix with one decay λ_E (pass lam_w=None): penalty (λ_E/2)‖E‖². Returns (value, W, E)."""
    if tied and lam_w is not None:
        raise ValueError(f"tied: one matrix, one decay (lam_e); got lam_w={lam_w!r}")
    C = np.asarray(counts, dtype=np.float64)
    n, V = C.shape
    d = width or min(n, V)
    Ct = torch.tensor(C / C.sum(), dtype=torch.float64)  # C_xv / N = P(x) q(v|x)
    Px = Ct.sum(1)

    def loss(E, W=None):
        Wm = E.T if W is None else W
        Z = (Wm @ E).T  # (n, V): row x = logits after context x
        ce = (Px * torch.logsumexp(Z, dim=1)).sum() - (Ct * Z).sum()
        pen_w = 0.0 if W is None else 0.5 * lam_w * (W * W).sum()
        return ce + pen_w + 0.5 * lam_e * (E * E).sum()

    shapes = [(d, n)] + ([] if tied else [(V, d)])
    val, parts = _train(loss, shapes, np.random.default_rng(seed), scale)
    return val, (parts[0].T if tied else parts[1]), parts[0]
