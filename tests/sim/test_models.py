"""The batched models: the bigram table's hand-written gradient against autograd on the raw
minibatch loss, on each of its row-gather paths, and the factored model's logits against the
matrix product they stand for."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from imbalance.sim import models
from imbalance.sim.models import BigramTable, FactoredBigram
from imbalance.sim.tasks import BigramTask


def _batch(M, C, V, B, seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(M, C, V, dtype=torch.float64, generator=g)  # (M, C, V)
    ctx = torch.randint(0, C, (M, B), generator=g)  # (M, B)
    tgt = torch.randint(0, V, (M, B), generator=g)  # (M, B)
    weights = torch.rand(V, dtype=torch.float64, generator=g) + 0.5  # (V,) per-target loss weights
    return W, ctx, tgt, weights


def _autograd(W, ctx, tgt, r, weights):
    """−(1/B) Σ_i w_{y_i} log softmax(r W[m, x_i])_{y_i} per model, and its gradient by autograd."""
    W = W.clone().requires_grad_(True)
    M, B = ctx.shape
    z = r * W[torch.arange(M)[:, None], ctx]  # (M, B, V)
    logp = torch.log_softmax(z, dim=-1).gather(-1, tgt[..., None])[..., 0]  # (M, B)
    loss = -(weights[tgt] * logp).sum(1) / B  # (M,)
    loss.sum().backward()
    return loss.detach(), W.grad


@pytest.mark.parametrize("path", ["dense_marks", "unique", "sync_free", "blocked"])
def test_bigram_gradient_equals_autograd(path, monkeypatch):
    C, B = (200, 4) if path == "unique" else (6, 16)  # unique: rows ≫ keys (M·C > 8·M·B)
    M, V, r = 3, 5, 1.7
    W, ctx, tgt, weights = _batch(M, C, V, B, seed=1)
    task = BigramTask(sp.csr_matrix(np.ones((C, V))), r=r)
    if path == "sync_free":  # the accelerator path (padded slots, a slot map), run on the CPU
        monkeypatch.setattr(models, "_sync_free", lambda device: True)
    if path == "blocked":  # softmax one row at a time, as for a vocabulary too large for the cache
        monkeypatch.setattr(models, "_BLOCK_BYTES", 1)
    loss, grads = BigramTable().loss_and_grads({"W": W}, ctx, tgt, task, weights=weights)
    ref_loss, ref_grad = _autograd(W, ctx, tgt, r, weights)
    # both are float64 sums of O(B·V) terms of size O(1): agreement to ~1e-15 relative; 1e-12 leaves margin
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads["W"].dense(W), ref_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tied", [False, True])
def test_factored_logits_are_the_embedding_product(tied):
    C = V = 7
    task = BigramTask(sp.csr_matrix(np.ones((C, V))), r=0.5)
    model = FactoredBigram(width=3, tied=tied)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    params = model.init(task, gens, torch.float64)
    ctx = torch.tensor([[0, 6, 3], [2, 2, 5]])  # (M, B)
    z = model.logits(params, ctx, task)  # (M, B, V)
    U = params["E"] if tied else params["W"]  # (M, V, d)
    for m in range(2):
        expect = task.r * params["E"][m, ctx[m]] @ U[m].T  # (B, V)
        torch.testing.assert_close(z[m], expect, rtol=1e-14, atol=1e-14)
    full = model.eval_logp(params, task)  # (M, C, V)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(2, C, dtype=torch.float64))
