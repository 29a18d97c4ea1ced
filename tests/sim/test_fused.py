"""The fused (compiled) AdamW update on every parameter shape of a transformer, checked on CPU with
torch.compile's eager backend (the same graph capture and guards as inductor, without code
generation): no recompilation limit is reached within or across sweeps, dtypes and model counts,
and the result equals the eager update to rounding."""

import numpy as np
import pytest
import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list

from imbalance.sim import SequenceTask, Transformer, optim, sweep

TASK = SequenceTask(V=24, lag=2, seq_len=8, n_train=64, n_heldout=16)


@pytest.fixture
def eager_backend(monkeypatch):
    monkeypatch.setattr(optim, "_BACKEND", "eager")
    monkeypatch.setattr(optim, "_COMPILED", {})
    torch._dynamo.reset()
    yield optim._COMPILED
    torch._dynamo.reset()


def test_fused_transformer_compiles_once_per_pattern_and_matches_eager(eager_backend):
    """Two layers (attention, MLP, LayerNorm, embeddings: ranks 2-4) in float32 and float64, with
    one and with two models: every fused sweep runs, each compiled copy holds one graph, and
    parameters agree with the eager update within a few ulps of the parameter scale per step."""
    runs = 0
    for dtype, ulp in ((torch.float32, 2.0 ** -23), (torch.float64, 2.0 ** -52)):
        for lams in ([0.0, 0.1], [0.3]):
            kw = dict(model=Transformer(n_layer=2, n_head=2, d_model=8), optimizer="adamw", steps=3, batch_size=4,
                      lr=1e-2, seeds=(0,), progress=False, dtype=dtype)
            fused, eager = sweep(TASK, lams, fused=True, **kw), sweep(TASK, lams, **kw)
            for k in fused.params:
                scale = float(eager.params[k].abs().max()) + kw["lr"] * kw["steps"]
                assert torch.allclose(fused.params[k], eager.params[k], rtol=0, atol=64 * ulp * scale), k
            runs += 1
    assert runs == 4 and len(eager_backend) > 0
    for fn in eager_backend.values():
        assert len(_debug_get_cache_entry_list(fn._torchdynamo_orig_callable.__code__)) == 1


def test_fused_bigram_rows_kernel_compiles_once(eager_backend):
    from imbalance.sim import BigramTable, BigramTask
    task = BigramTask.stochastic_zipf(12, 1.1, 0.6)
    kw = dict(model=BigramTable(), optimizer="adamw", steps=5, batch_size=8, lr=0.05, progress=False)
    for seeds in ((0,), (0, 1)):
        a, b = sweep(task, [0.1, 0.2], fused=True, seeds=seeds, **kw), sweep(task, [0.1, 0.2], seeds=seeds, **kw)
        assert np.allclose(a.params["W"], b.params["W"], rtol=1e-12, atol=1e-15)
    for fn in eager_backend.values():
        assert len(_debug_get_cache_entry_list(fn._torchdynamo_orig_callable.__code__)) == 1
