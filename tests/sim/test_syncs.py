"""Host–device synchronisation per training step, counted on CPU.

A CPU run cannot stall on a device, so the test counts the calls that would: every read of a
tensor's value on the host (``item``, ``tolist``, ``__bool__``, ``__int__``, ``__float__``,
``numpy``, ``cpu``), every data-dependent size (``nonzero``, ``unique``, ``masked_select``) and
every tensor built from Python numbers (``torch.tensor``, ``as_tensor``), with the bigram
table's row gather switched to the path it takes on an accelerator. A sweep of 30 steps and one
of 10, each evaluated only at its end, differ by 20 training steps: the counts must not differ.
"""

import importlib

import numpy as np
import pytest
import torch

from imbalance.sim import BigramTable, BigramTask, SequenceTask, Transformer, models, sweep
from imbalance.sim.optim import RowGrad

_TENSOR_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "numpy", "cpu", "nonzero", "unique",
                   "masked_select")
_TORCH_FUNCTIONS = ("tensor", "as_tensor", "nonzero", "unique", "masked_select")
opt_mod = importlib.import_module("imbalance.sim.optim")


def _count_host_reads(monkeypatch, fn):
    counts = {}

    def wrap(owner, name):
        real = getattr(owner, name)

        def counted(*a, **k):
            counts[name] = counts.get(name, 0) + 1
            return real(*a, **k)

        monkeypatch.setattr(owner, name, counted)

    for name in _TENSOR_METHODS:
        wrap(torch.Tensor, name)
    for name in _TORCH_FUNCTIONS:
        wrap(torch, name)
    try:
        fn()
    finally:
        monkeypatch.undo()
    return counts


TASKS = {
    "bigram": (BigramTask.stochastic_zipf(16, 1.1, 0.6), BigramTable),
    "lm": (SequenceTask(V=16, lag=2, seq_len=6, n_train=32, n_heldout=8), lambda: Transformer(1, 2, 8)),
}


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("name", sorted(TASKS))
def test_no_host_reads_per_training_step(monkeypatch, name, fused):
    task, model = TASKS[name]
    opt_mod_backend = opt_mod._BACKEND
    kw = dict(optimizer="adamw", batch_size=8, lr=1e-2, seeds=(0, 1), progress=False, fused=fused,
              dtype=torch.float64)

    def run(steps):
        mp = pytest.MonkeyPatch()
        mp.setattr(models, "_sync_free", lambda device: True)
        mp.setattr(opt_mod, "_BACKEND", "eager")
        try:
            return _count_host_reads(mp, lambda: sweep(task, [0.0, 0.1], model=model(), steps=steps,
                                                       eval_every=steps, **kw))
        finally:
            mp.undo()

    run(10)  # compile first, so that both counted runs find their kernels
    short, long = run(10), run(30)
    assert opt_mod._BACKEND == opt_mod_backend
    assert long == short, {k: long.get(k, 0) - short.get(k, 0) for k in set(long) | set(short)}


@pytest.mark.parametrize("reweight", [False, True])
def test_sync_free_row_gather_equals_the_compact_one(monkeypatch, reweight):
    """The padded, sort-based gather (accelerators) gives the loss and gradient of the compact one."""
    task = BigramTask.stochastic_zipf(9, 1.0, 0.5, r=1.3)
    g = torch.Generator().manual_seed(0)
    W = torch.randn(3, 9, 9, generator=g, dtype=torch.float64)
    ctx, tgt = (t.view(3, 20) for t in task.sample(g, 60))
    w = torch.rand(9, generator=g, dtype=torch.float64) + 0.5 if reweight else None
    loss, grads = BigramTable().loss_and_grads({"W": W}, ctx, tgt, task, w)
    monkeypatch.setattr(models, "_sync_free", lambda device: True)
    loss2, grads2 = BigramTable().loss_and_grads({"W": W}, ctx, tgt, task, w)
    assert grads2["W"].rows.numel() == 60 and grads2["W"].slot is not None
    assert torch.allclose(loss2, loss, rtol=1e-14, atol=0)
    assert torch.allclose(grads2["W"].dense(W), grads["W"].dense(W), rtol=1e-13, atol=1e-16)
    slot = grads2["W"].slot
    seen = slot >= 0
    assert torch.equal(seen.nonzero().squeeze(1), grads["W"].rows)
    assert torch.equal(grads2["W"].values[slot[seen]], grads["W"].values)


def test_sync_free_sweep_equals_the_compact_one(monkeypatch):
    task, _ = TASKS["bigram"]
    kw = dict(model=BigramTable(), optimizer="adamw", steps=20, batch_size=8, lr=0.05, seeds=(0, 1), progress=False)
    ref = sweep(task, [0.0, 0.1], **kw)
    monkeypatch.setattr(models, "_sync_free", lambda device: True)
    got = sweep(task, [0.0, 0.1], **kw)
    assert np.allclose(got.params["W"], ref.params["W"], rtol=1e-12, atol=1e-15)


def test_rowgrad_with_padding_is_dense_sum():
    g = RowGrad(torch.tensor([2, 0, 2]), torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0]]))
    assert torch.equal(g.dense(torch.zeros(3, 2)), torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]]))
