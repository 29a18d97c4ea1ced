"""Predicted learning curves ℓ_v(t) of the bigram model (one-hot contexts), without sampling.

The model and notation are those of T2/T3 (``proofs/T2_bigram.md``, ``proofs/T3_adamw.md``):
context x (probability P(x)) enters as r e_x, logits z_x = r w_x, next-token law q(·|x).
For the weight of context x and token j, with μ = p_j − q_j, σ² = q_j(1 − q_j), the
minibatch mean gradient over B i.i.d. pairs has

    E[g] = P r μ,     E[g²] = r² (P σ² + P(1−P) μ² + B P² μ²) / B           (T3(1)).

Two deterministic recursions, stepped exactly as the optimisers step (one update per
optimiser step, the gradient read before the decay is applied):

* ``"sgd"`` — the drift of SGD with coupled L2: w ← w (1 − ηλ) − η E[g](w). For full-batch
  gradient descent on F(W) = Σ_x P(x) CE(q_x, r w_x) + (λ/2)‖W‖² this *is* the algorithm;
  for minibatch SGD it is the mean path, and the iterate noise adds a bias of order η/B
  (estimated by :func:`sgd_noise_excess_estimate`).
* ``"adamw"`` — the mean-field AdamW flow: m and v are the exponential averages of E[g] and
  E[g²] along the path (exact in expectation: m and v are linear in g and g²), bias
  corrected, and w ← w (1 − ηλ) − η m̂/(√v̂ + ε). The approximation is E[m̂/(√v̂ + ε)] ≈
  E[m̂]/(√E[v̂] + ε): good when a coordinate's v̂ averages many nonzero gradients (B P/(1 − β₂)
  ≫ 1), poor for contexts seen less than once per β₂ window. ``batch_size=None`` uses the
  exact expected gradient (E[g²] = E[g]²): deterministic Adam on F, exact.

Within a context the recursion depends on a token only through its q_j and its start, so
from a start that is equal across the tokens a context never saw (zeros, as the simulation's
``BigramTable``) those tokens stay equal and are carried as one item with a multiplicity:
O(n_λ · (nnz + contexts)) per step. A dense ``init`` (contexts × V) is carried densely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._progress import progress_bar
from .._validate import (
    as_choice,
    as_count_matrix,
    as_nonnegative,
    as_positive,
    as_positive_int,
)

__all__ = ["BigramTrajectory", "bigram_trajectory", "eval_steps", "sgd_noise_excess_estimate"]


@dataclass(frozen=True)
class BigramTrajectory:
    """Predicted per-token loss along training, λ leading (dropped for a scalar λ).

    ``steps`` (n_eval,) the optimiser steps at which the loss is given (0 = the start);
    ``loss_per_token`` (L, n_eval, V) ℓ_v = Σ_x J(x, v)(−log p(v|x))/π_v (NaN if π_v = 0);
    ``context_norm_mu`` (L, n_eval, n_ctx) ‖p(·|x) − q(·|x)‖² (for the SGD noise estimate);
    ``aggregate_loss``/``token_balanced_loss`` (L, n_eval).
    """

    lam: np.ndarray | float
    optimizer: str
    lr: float
    r: float
    batch_size: int | None
    eps: float
    betas: tuple
    steps: np.ndarray
    token_probs: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: np.ndarray
    token_balanced_loss: np.ndarray
    context_norm_mu: np.ndarray
    context_prob: np.ndarray
    context_q_sq: np.ndarray     # (n_ctx,) ‖q(·|x)‖²


def eval_steps(steps: int, eval_every: int | None = None) -> np.ndarray:
    """The steps at which ``imbalance.sim.sweep`` logs its curve: 0, every ``eval_every``
    (default max(1, steps // 20)) and the last step."""
    steps = as_positive_int(steps, "steps")
    every = as_positive_int(eval_every or max(1, steps // 20), "eval_every")
    out = list(range(0, steps + 1, every))
    if out[-1] != steps:
        out.append(steps)
    return np.asarray(out)


def _check_decays(lam):
    arr = np.asarray(lam, dtype=np.float64)
    if arr.ndim > 1 or arr.size == 0 or not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"lam must be a number >= 0 or a non-empty 1-D array of them, got lam={lam!r}")
    return np.atleast_1d(arr), arr.ndim == 0


@dataclass(frozen=True)
class _Items:
    """Flat items of the active contexts, contiguous per context: ``start`` of each context's
    run, ``seg`` context slot, ``q``, ``mult``, ``P``; ``nz`` the item of each count entry."""

    start: np.ndarray
    seg: np.ndarray
    q: np.ndarray
    mult: np.ndarray
    P: np.ndarray
    nz: np.ndarray
    w0: np.ndarray
    width: int  # items per context when all contexts have the same number, else 0


def _items(C: sp.csr_matrix, init) -> tuple[_Items, np.ndarray]:
    n_ctx, V = C.shape
    row_n = np.asarray(C.sum(axis=1)).ravel()
    P_all = row_n / row_n.sum()
    active = np.flatnonzero(row_n > 0)
    nnz_row = np.diff(C.indptr)
    row_of_nz = np.repeat(np.arange(n_ctx), nnz_row)
    q_nz = C.data / row_n[row_of_nz]
    slot = np.full(n_ctx, -1)
    slot[active] = np.arange(active.size)
    if init is None:  # nonzeros, then one shared item for the absent tokens when there are any
        n_abs = V - nnz_row[active]
        size = nnz_row[active] + (n_abs > 0)
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        seg = np.repeat(np.arange(active.size), size)
        offset = np.arange(C.nnz) - C.indptr[row_of_nz]
        nz = start[slot[row_of_nz]] + offset
        q = np.zeros(seg.size)
        q[nz] = q_nz
        mult = np.ones(seg.size)
        has = n_abs > 0
        mult[(start + nnz_row[active])[has]] = n_abs[has]
        w0 = np.zeros(seg.size)
    else:
        W0 = np.asarray(init, dtype=np.float64)
        if W0.shape != (n_ctx, V) or not np.isfinite(W0).all():
            raise ValueError(f"init must be a finite ({n_ctx}, {V}) array, got shape {W0.shape}")
        start = np.arange(active.size) * V
        seg = np.repeat(np.arange(active.size), V)
        nz = slot[row_of_nz] * V + C.indices
        q = np.zeros(seg.size)
        q[nz] = q_nz
        mult = np.ones(seg.size)
        w0 = W0[active].ravel()
    sizes = np.diff(np.append(start, seg.size))
    width = int(sizes[0]) if sizes.size and (sizes == sizes[0]).all() else 0
    return _Items(start, seg, q, mult, P_all[active][seg], nz, w0, width), P_all


def _log_softmax(z, it: _Items):
    """log p of every item (L, n1) with multiplicities, per context."""
    n_seg = it.start.size
    if z.shape[1] == n_seg * it.width:  # every context has the same number of items: reshape, no gathers
        zz = z.reshape(z.shape[0], n_seg, it.width)  # (L, G, n_per)
        zs = zz - zz.max(-1, keepdims=True)
        e = np.exp(zs)
        e *= it.mult.reshape(n_seg, it.width)
        zs -= np.log(e.sum(-1, keepdims=True))
        return zs.reshape(z.shape)
    zmax = np.maximum.reduceat(z, it.start, axis=1)  # (L, G)
    zs = z - zmax[:, it.seg]
    lse = np.log(np.add.reduceat(it.mult * np.exp(zs), it.start, axis=1))  # (L, G)
    return zs - lse[:, it.seg]


def _probs(z, it: _Items):
    """p of every item (L, n1): one exp per item (the step loop needs p, not log p)."""
    n_seg = it.start.size
    if z.shape[1] == n_seg * it.width:
        zz = z.reshape(z.shape[0], n_seg, it.width)  # (L, G, n_per)
        e = np.exp(zz - zz.max(-1, keepdims=True))
        e /= (e * it.mult.reshape(n_seg, it.width)).sum(-1, keepdims=True)
        return e.reshape(z.shape)
    e = np.exp(z - np.maximum.reduceat(z, it.start, axis=1)[:, it.seg])
    return e / np.add.reduceat(it.mult * e, it.start, axis=1)[:, it.seg]


def _adamw_update(g, mu, state, t, *, b1, b2, eps, r, A, beta):
    """Mean-field Adam direction m̂/(√v̂ + ε) from E[g] (and E[g²] = r²(A + β μ²), or E[g]² if A is None)."""
    g2 = g * g if A is None else r * r * (A + beta * mu * mu)
    m, v = state
    m *= b1
    m += (1.0 - b1) * g
    v *= b2
    v += (1.0 - b2) * g2
    den = np.sqrt(v / (1.0 - b2 ** t))
    den += eps
    # a coordinate whose gradient is exactly 0 so far (ε = 0) does not move: 0/0 → 0
    return np.divide(m / (1.0 - b1 ** t), den, out=np.zeros_like(den), where=den > 0)


def bigram_trajectory(counts, lam, *, steps, lr, optimizer="sgd", r=1.0, batch_size=None, betas=(0.9, 0.999),
                      eps=1e-8, eval_every=None, init=None) -> BigramTrajectory:
    """Predicted per-token loss ℓ_v(t) of the bigram model trained from ``init`` (default zeros).

    ``optimizer="sgd"``: gradient descent / SGD drift with coupled L2 (``lam`` ≥ 0);
    ``"adamw"``: the mean-field AdamW flow with decoupled decay, the minibatch moments of
    ``batch_size`` i.i.d. pairs (None: exact expected gradient), Adam's ``betas``
    (``(0, 0)``: the update E[g]/(√E[g²] + ε) without averaging) and ``eps``.
    Logged at :func:`eval_steps` (``steps``, ``eval_every``), as the sweep logs its curve.
    """
    C = as_count_matrix(counts, "counts")
    lams, scalar = _check_decays(lam)
    steps = as_positive_int(steps, "steps")
    lr = as_positive(lr, "lr")
    r = as_positive(r, "r")
    optimizer = as_choice(optimizer, "optimizer", {"sgd", "adamw"})
    eps = as_nonnegative(eps, "eps")
    b1, b2 = (float(b) for b in betas)
    for name, b in (("betas[0]", b1), ("betas[1]", b2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {name}={b!r}")
    B = None if batch_size is None else as_positive_int(batch_size, "batch_size")
    log_at = eval_steps(steps, eval_every)
    it, P_all = _items(C, init)
    loss, mu_sq, q_sq = _run(C, it, P_all, lams, log_at, lr=lr, r=r, optimizer=optimizer, B=B, betas=(b1, b2),
                             eps=eps)
    V = C.shape[1]
    pi = np.bincount(C.indices, weights=C.data, minlength=V) / C.data.sum()
    seen = pi > 0
    agg = np.nansum(loss[..., seen] * pi[seen], -1)
    bal = loss[..., seen].mean(-1)
    if scalar:
        loss, mu_sq, agg, bal = loss[0], mu_sq[0], agg[0], bal[0]
    return BigramTrajectory(lam=float(lams[0]) if scalar else lams, optimizer=optimizer, lr=lr, r=r, batch_size=B,
                            eps=eps, betas=(b1, b2), steps=log_at, token_probs=pi, loss_per_token=loss,
                            aggregate_loss=agg, token_balanced_loss=bal, context_norm_mu=mu_sq,
                            context_prob=P_all, context_q_sq=q_sq)


def _run(C, it: _Items, P_all, lams, log_at, *, lr, r, optimizer, B, betas, eps):
    """The recursion of ``bigram_trajectory``: (loss (L, n_eval, V), ‖p − q‖² (L, n_eval, n_ctx), ‖q‖² (n_ctx,))."""
    n_ctx, V = C.shape
    L = lams.size
    w = np.tile(it.w0, (L, 1))  # (L, n1)
    state = (np.zeros_like(w), np.zeros_like(w))  # m, v
    P, q = it.P, it.q
    A = beta = None
    if B is not None:  # E[g²] = r² (A + β μ²): A = Pσ²/B, β = (P(1−P) + B P²)/B
        A = P * q * (1.0 - q) / B
        beta = (P * (1.0 - P) + B * P * P) / B
    loss_map, seen = _token_map(C, it)
    ctx_map = sp.csr_matrix((it.mult, (np.arange(it.seg.size), it.seg)), shape=(it.seg.size, it.start.size))
    q_sq = np.zeros(n_ctx)
    q_sq[P_all > 0] = ctx_map.T @ (it.mult * q * q)
    records = []

    def record():
        logp = _log_softmax(r * w, it)  # (L, n1)
        loss = np.full((L, V), np.nan)
        loss[:, seen] = (-logp[:, it.nz] @ loss_map)[:, seen]
        mu_sq = np.zeros((L, n_ctx))
        mu_sq[:, P_all > 0] = ((np.exp(logp) - q) ** 2) @ ctx_map
        records.append((loss, mu_sq))

    record()
    k = 1
    shrink = 1.0 - lr * lams[:, None]  # (L, 1)
    Pr = P * r
    for t in progress_bar(range(1, int(log_at[-1]) + 1), desc=f"{optimizer} trajectory ({L} λ)", unit="step"):
        mu = _probs(r * w, it)  # (L, n1)
        mu -= q  # p − q
        g = Pr * mu  # E[g]
        w *= shrink
        if optimizer == "sgd":
            w -= lr * g
        else:
            w -= lr * _adamw_update(g, mu, state, t, b1=betas[0], b2=betas[1], eps=eps, r=r, A=A, beta=beta)
        if k < log_at.size and t == log_at[k]:
            record()
            k += 1
    return np.stack([rec[0] for rec in records], 1), np.stack([rec[1] for rec in records], 1), q_sq


def _token_map(C: sp.csr_matrix, it: _Items):
    """Sparse (nnz, V) map from the nll of each count entry to ℓ_v, and the seen tokens."""
    V = C.shape[1]
    target_n = np.bincount(C.indices, weights=C.data, minlength=V)
    seen = target_n > 0
    weight = C.data / target_n[C.indices]
    return sp.csr_matrix((weight, (np.arange(C.nnz), C.indices)), shape=(C.nnz, V)), seen


def sgd_noise_excess_estimate(traj: BigramTrajectory, batch_size: int, counts) -> np.ndarray:
    """Estimated excess expected loss of minibatch SGD over its mean path, per token (same shape as
    ``traj.loss_per_token``):

        ΔE[ℓ_x] ≈ ½ r² tr(G Σ) ≈ η r² (1 − ‖q_x‖² + ‖p_x − q_x‖²) / (4B),

    with G = diag p − p pᵀ the Hessian of −log p_j in w (the same for every j), Σ the stationary
    covariance of the linearised iterate noise, KΣ + ΣK = η Cov(g), K = λ + P r² G,
    Cov(g) = P r² (diag q − q qᵀ + (1 − P) μ μᵀ)/B, and G K⁻¹ ≈ 1/(P r²) (λ small; exact only
    when G and Cov(g) commute). Frequency-free: every context gets ≈ η r²/(4B) when q is spread.
    Measured (``imbalance.reproduce.scaling.sgd_noise_excess_measurement``): the η/B scaling holds,
    but the true excess was about 2.5× this estimate (the non-commuting terms and the O(η) shift of
    the mean iterate are not in it), so use it for the order, not as a bound.
    Mapped to tokens by ℓ_v = Σ_x J(x, v) ΔE[ℓ_x]/π_v.
    """
    if traj.optimizer != "sgd":
        raise ValueError(f"sgd_noise_excess_estimate needs an SGD trajectory, got optimizer={traj.optimizer!r}")
    B = as_positive_int(batch_size, "batch_size")
    C = as_count_matrix(counts, "counts")
    per_ctx = traj.lr * traj.r ** 2 * (1.0 - traj.context_q_sq + traj.context_norm_mu) / (4.0 * B)  # (..., n_ctx)
    V = C.shape[1]
    target_n = np.bincount(C.indices, weights=C.data, minlength=V)
    share = sp.diags(1.0 / np.maximum(target_n, 1.0)) @ C.T.tocsr()  # (V, n_ctx) J(x, v)/π_v
    out = np.asarray((share @ per_ctx.reshape(-1, per_ctx.shape[-1]).T).T).reshape(per_ctx.shape[:-1] + (V,))
    out[..., target_n == 0] = np.nan
    return out
