"""Bigram tables trained with ``FairAdamW`` in a plain loop (checks of T6b against simulation).

R replicas of one (C, V) table per variant, as one parameter: row options act on each row alone, so
the optimizer sees an (R·C, V) matrix (row scale tiled); the shared second moment averages over rows,
so with ``coupled`` it sees (C, R·V): rows are contexts, and the mean over them stays per replica.
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

__all__ = ["BigramRun", "loss_margins", "train_bigram"]


@dataclass(frozen=True)
class BigramRun:
    """``weights_avg``: (n_variants, R, C, V) iterate average over the last ``average_last`` steps;
    ``weights``: the final iterate, same shape; ``variants``: the option dicts, in order."""

    weights_avg: np.ndarray
    weights: np.ndarray
    variants: tuple
    steps: int
    average_last: int


def _batch_grad(W, ctx, tgt, r, B):
    """W (N, C, V), ctx/tgt (N, B) → exact minibatch-mean gradient (N, C, V)."""
    N, C, V = W.shape
    n = torch.zeros(N, C, dtype=W.dtype).scatter_add_(1, ctx, torch.ones_like(ctx, dtype=W.dtype))  # (N, C)
    t = torch.zeros(N, C * V, dtype=W.dtype).scatter_add_(1, ctx * V + tgt, torch.ones_like(ctx, dtype=W.dtype))
    p = torch.softmax(r * W, dim=-1)                                      # (N, C, V)
    return (r / B) * (n.unsqueeze(-1) * p - t.view(N, C, V))              # (N, C, V)


def _variant_group(variant, R, C, V):
    """A variant's replicas as one parameter: (R·C, V) rows (row scale tiled), or with ``coupled``
    (C, R·V), so that the mean over rows (contexts) stays within each replica's columns."""
    variant = dict(variant)
    unknown = set(variant) - {"row_decay_scale", "lazy", "coupled"}
    if unknown:
        raise ValueError(f"variants may set row_decay_scale, lazy, coupled; got {sorted(unknown)}")
    coupled = variant.get("coupled", False)
    if coupled and variant.get("lazy", "none") != "none":
        raise ValueError(f"train_bigram runs coupled=True with lazy='none' only, got lazy={variant['lazy']!r}")
    table = torch.zeros((C, R * V) if coupled else (R * C, V), dtype=torch.float64)
    table.grad = torch.zeros_like(table)
    if not coupled and variant.get("row_decay_scale") is not None:
        variant["row_decay_scale"] = np.tile(np.asarray(variant["row_decay_scale"], dtype=np.float64), R)
    return {"params": [table], **variant}


def _as_replicas(table, R, C, V, coupled):
    """The (R, C, V) view of a variant's parameter (a strided view when ``coupled``)."""
    return table.view(C, R, V).permute(1, 0, 2) if coupled else table.view(R, C, V)


def train_bigram(task, lam, *, batch_size, lr, steps, variants=({},), replicas=1, seed=0, average_last=None,
                 betas=(0.9, 0.999), eps=1e-8) -> BigramRun:
    """Train ``replicas`` copies of ``task`` (a ``BigramTask``) from W = 0 with ``FairAdamW`` (weight
    decay ``lam``) for each variant (a dict of ``FairAdamW`` group options), all in one loop.

    Every (variant, replica) draws its own batches of ``batch_size`` pairs from ``task.sample`` (one
    ``torch.Generator(seed)``), so all runs are independent.
    """
    B = as_positive_int(batch_size, "batch_size")
    steps = as_positive_int(steps, "steps")
    average_last = steps // 2 if average_last is None else as_positive_int(average_last, "average_last")
    if average_last > steps:
        raise ValueError(f"average_last must be <= steps={steps}, got average_last={average_last}")
    R = as_positive_int(replicas, "replicas")
    variants = tuple(dict(v) for v in variants)
    gen = torch.Generator().manual_seed(int(seed))
    C, V, N = task.n_contexts, task.vocab_size, len(variants) * R
    groups = [_variant_group(v, R, C, V) for v in variants]
    opt = FairAdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=lam)
    views = [_as_replicas(g["params"][0], R, C, V, g.get("coupled", False)) for g in groups]  # (R, C, V) each
    grads = [_as_replicas(g["params"][0].grad, R, C, V, g.get("coupled", False)) for g in groups]
    total = torch.zeros(len(variants), R, C, V, dtype=torch.float64)      # (n_var, R, C, V)
    for step in range(steps):
        ctx, tgt = (t.view(N, B) for t in task.sample(gen, N * B))        # (N, B) each
        W = torch.stack(views)                                            # (n_var, R, C, V), a copy
        G = _batch_grad(W.view(N, C, V), ctx, tgt, task.r, B).view_as(W)
        for g, Gi in zip(grads, G):
            g.copy_(Gi)
        opt.step()
        if step >= steps - average_last:
            total += torch.stack(views)
    W = torch.stack(views)
    return BigramRun(weights_avg=(total / average_last).numpy(), weights=W.numpy().copy(), variants=variants,
                     steps=steps, average_last=average_last)


def loss_margins(W, r=1.0) -> np.ndarray:
    """Deterministic bigram: loss-equivalent margin of each row x of W (..., K, K) → (..., K),
    ℓ_x = −log softmax(r W[x])_x = log(1 + (K−1)e^{−m_x}) (``theory.fair_decay.loss_margins_from_logits``)."""
    return loss_margins_from_logits(r * np.asarray(W, dtype=np.float64))
