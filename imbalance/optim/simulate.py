"""Bigram tables trained with ``FairAdamW`` in a plain loop (checks of T6b against simulation).

R replicas of one (C, V) table stacked as (R, C, V). Row options act on each row alone except the
shared second moment, so the optimizer sees one (R·C, V) matrix (row scale tiled), or, with
``coupled``, R separate (C, V) views so that the mean over rows stays within one replica.
The gradient is exact for the batch: ∂/∂W[x] = (r/B)(n_x softmax(r W[x]) − t_x), n_x the count of
context x in the batch and t_x its target counts (rows absent from the batch get exactly zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validate import as_positive_int
from ..theory.fair_decay import loss_margins_from_logits
from .adamw import FairAdamW

__all__ = ["BigramRun", "train_bigram", "loss_margins"]


@dataclass(frozen=True)
class BigramRun:
    """``weights_avg``: (R, C, V) iterate average over the last ``average_last`` steps; ``weights``: final."""

    weights_avg: np.ndarray
    weights: np.ndarray
    steps: int
    average_last: int


def _batch_grad(W, ctx, tgt, r, B):
    """W (R, C, V), ctx/tgt (R, B) → exact minibatch-mean gradient (R, C, V)."""
    S, C, V = W.shape
    n = torch.zeros(S, C, dtype=W.dtype).scatter_add_(1, ctx, torch.ones_like(ctx, dtype=W.dtype))  # (S, C)
    t = torch.zeros(S, C * V, dtype=W.dtype).scatter_add_(1, ctx * V + tgt, torch.ones_like(ctx, dtype=W.dtype))
    p = torch.softmax(r * W, dim=-1)                                      # (S, C, V)
    return (r / B) * (n.unsqueeze(-1) * p - t.view(S, C, V))              # (S, C, V)


def train_bigram(task, lam, *, batch_size, lr, steps, replicas=1, seed=0, average_last=None, betas=(0.9, 0.999),
                 eps=1e-8, row_decay_scale=None, lazy="none", coupled=False) -> BigramRun:
    """Train ``replicas`` copies of ``task`` (a ``BigramTask``) from W = 0 with ``FairAdamW`` (weight decay ``lam``).

    Each replica draws its own batches of ``batch_size`` pairs from ``task.sample`` (one
    ``torch.Generator(seed)`` for all, so replicas are independent runs).
    """
    B = as_positive_int(batch_size, "batch_size")
    steps = as_positive_int(steps, "steps")
    average_last = steps // 2 if average_last is None else as_positive_int(average_last, "average_last")
    if average_last > steps:
        raise ValueError(f"average_last must be <= steps={steps}, got average_last={average_last}")
    R = as_positive_int(replicas, "replicas")
    gen = torch.Generator().manual_seed(int(seed))
    C, V = task.n_contexts, task.vocab_size
    W = torch.zeros(R, C, V, dtype=torch.float64)                         # (R, C, V)
    G = torch.zeros_like(W)
    if coupled:
        tables, grads = [W[i] for i in range(R)], [G[i] for i in range(R)]  # (C, V) views each
        scale = row_decay_scale
    else:
        tables, grads = [W.view(R * C, V)], [G.view(R * C, V)]
        scale = None if row_decay_scale is None else np.tile(np.asarray(row_decay_scale, dtype=np.float64), R)
    opt = FairAdamW([{"params": tables, "row_decay_scale": scale, "lazy": lazy, "coupled": coupled}],
                    lr=lr, betas=betas, eps=eps, weight_decay=lam)
    for w, g in zip(tables, grads):
        w.grad = g
    total = torch.zeros_like(W)
    for step in range(steps):
        ctx, tgt = (t.view(R, B) for t in task.sample(gen, R * B))        # (R, B) each
        G.copy_(_batch_grad(W, ctx, tgt, task.r, B))                       # (R, C, V)
        opt.step()
        if step >= steps - average_last:
            total += W
    return BigramRun(weights_avg=(total / average_last).numpy(), weights=W.numpy().copy(), steps=steps,
                     average_last=average_last)


def loss_margins(W, r=1.0) -> np.ndarray:
    """Deterministic bigram: loss-equivalent margin of each row x of W (..., K, K) → (..., K),
    ℓ_x = −log softmax(r W[x])_x = log(1 + (K−1)e^{−m_x}) (``theory.fair_decay.loss_margins_from_logits``)."""
    return loss_margins_from_logits(r * np.asarray(W, dtype=np.float64))
