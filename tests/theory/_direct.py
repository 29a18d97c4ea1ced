"""Direct training of the factors on the raw (non-convex) objectives, in torch float64.

This is the independent side of every convex-vs-direct check: it never calls the nuclear
solver, it minimises the factored losses of T5/T7 as written, from random initialisations.
"""

from __future__ import annotations

import numpy as np
import torch


def _lbfgs(params, closure, rounds: int = 40, iters: int = 500):
    opt = torch.optim.LBFGS(params, lr=1, max_iter=iters, history_size=50, tolerance_grad=1e-14,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")
    last = None
    for _ in range(rounds):  # restarts refresh the curvature pairs; stop when nothing moves
        val = float(opt.step(closure))
        if last is not None and abs(last - val) <= 1e-16 * abs(val):
            break
        last = val
    with torch.no_grad():
        return float(closure(backward=False))


def _closure_factory(loss_fn, params):
    def closure(backward=True):
        if backward:
            for p in params:
                p.grad = None
        val = loss_fn()
        if backward:
            val.backward()
        return val.detach()
    return closure


def ufm_direct(pi, lam_w, lam_h, *, bias=False, relu=False, seed=0, width=None, scale=0.1):
    """min Σ_k π_k CE(W h_k + b, k) + (λ_W/2)‖W‖² + (λ_H/2)Σ_k π_k‖h_k‖² over W (K×d), H (d×K).

    ``relu=True`` constrains H ≥ 0 (Dang et al. 2024) by the parametrisation H = G ⊙ G... no:
    by projection after each L-BFGS round is not valid for L-BFGS, so H = softplus-free
    square parametrisation H = G², which has the same minimum over H ≥ 0.
    """
    K = len(pi)
    d = width or K
    g = torch.Generator().manual_seed(seed)
    W = (scale * torch.randn(K, d, generator=g, dtype=torch.float64)).requires_grad_()
    G = (scale * torch.randn(d, K, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.zeros(K, dtype=torch.float64, requires_grad=bias)
    pit = torch.tensor(pi, dtype=torch.float64)
    params = [W, G] + ([b] if bias else [])

    def loss():
        H = G * G if relu else G
        Z = (W @ H).T + b  # (K, K): row k = logits of class-k features
        ce = torch.logsumexp(Z, dim=1) - torch.diagonal(Z)
        return pit @ ce + 0.5 * lam_w * (W * W).sum() + 0.5 * lam_h * (pit * (H * H).sum(0)).sum()

    val = _lbfgs(params, _closure_factory(loss, params))
    H = (G * G if relu else G).detach().numpy()
    return val, W.detach().numpy(), H, b.detach().numpy()


def bigram_direct(counts, lam_w, lam_e, *, tied=False, seed=0, width=None, scale=0.1):
    """min Σ_x P(x) CE(q_x, W e_x) + (λ_W/2)‖W‖² + (λ_E/2)‖E‖², W (V×d), E (d×n); tied: W = Eᵀ."""
    C = np.asarray(counts, dtype=np.float64)
    n, V = C.shape
    d = width or min(n, V)
    g = torch.Generator().manual_seed(seed)
    Ct = torch.tensor(C / C.sum(), dtype=torch.float64)  # C_xv / N = P(x) q(v|x)
    E = (scale * torch.randn(d, n, generator=g, dtype=torch.float64)).requires_grad_()
    params = [E]
    if not tied:
        W = (scale * torch.randn(V, d, generator=g, dtype=torch.float64)).requires_grad_()
        params.append(W)

    def loss():
        Wm = E.T if tied else W
        Z = (Wm @ E).T  # (n, V): row x = logits after context x
        ce = (Ct.sum(1) * torch.logsumexp(Z, dim=1)).sum() - (Ct * Z).sum()
        return ce + 0.5 * lam_w * (Wm * Wm).sum() + 0.5 * lam_e * (E * E).sum()

    return _lbfgs(params, _closure_factory(loss, params))
