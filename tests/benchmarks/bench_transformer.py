"""Tokens per second of the stacked transformer sweep, against a plain per-model loop.

Run: ``pytest -m benchmark tests/benchmarks/bench_transformer.py -s``. On the device that
``device="auto"`` picks (a GPU when one is present), torch's default threads on CPU. Two
settings: the report's small LM (``small_lm()``: V = 128, one layer of width 32, 16 × 16 tokens
per model and step, 4 λ × 3 seeds, float32) and, on a GPU only, a wider one (4 layers of
width 256, 32 × 128 tokens per model and step, 4 λ × 2 seeds). The baseline is the same
models trained one after another with ``torch.optim.AdamW`` and autograd; the two run
interleaved in blocks of ``BLOCK`` steps (synchronised at block ends on a GPU), and each
time is the median over blocks.
"""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imbalance.sim import SequenceTask, Transformer, sweep
from imbalance.sim.devices import resolve_device
from imbalance.sim.paradox import small_lm

pytestmark = pytest.mark.benchmark

BLOCK = 5
LR = 1e-2


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SequentialTransformers:
    """The plain per-model loop: one transformer per (λ, seed), torch.optim.AdamW, autograd."""

    def __init__(self, task, model, lams, seeds, batch_size, dtype, device):
        self.task, self.model, self.B, self.device = task, model, batch_size, device
        self.runs = []
        for lam in lams:
            for seed in seeds:
                gen = torch.Generator().manual_seed(seed)
                params = {k: v.to(device).requires_grad_(True) for k, v in model.init(task, [gen], dtype).items()}
                groups = [{"params": [p for k, p in params.items() if k in model.decayed], "weight_decay": lam},
                          {"params": [p for k, p in params.items() if k not in model.decayed], "weight_decay": 0.0}]
                self.runs.append((gen, params, torch.optim.AdamW(groups, lr=LR)))

    def round(self):
        for gen, params, opt in self.runs:
            x, y = self.task.sample(gen, self.B)  # (B, T) each
            logits = self.model.logits(params, x.to(self.device)[None], self.task)  # (1, B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.to(self.device).reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()


def _measure(task, model, lams, seeds, batch_size, dtype, steps, precision="strict"):
    """(batched s/step, sequential s/round, tokens per step, device) in blocks of BLOCK steps."""
    device = resolve_device("auto")
    kw = dict(model=model, optimizer="adamw", batch_size=batch_size, lr=LR, seeds=seeds, dtype=dtype,
              progress=False, device=device, precision=precision)
    sweep(task, lams, steps=2, eval_every=2, **kw)  # warm-up
    seq = SequentialTransformers(task, model, lams, seeds, batch_size, dtype, device)
    seq.round()
    bat, base, start = [], [], [None]

    def callback(step):
        if step % BLOCK:
            return
        _sync(device)
        now = time.perf_counter()
        if start[0] is not None and step < steps:  # the last block also evaluates: not timed
            bat.append((now - start[0]) / BLOCK)
        t = time.perf_counter()
        for _ in range(BLOCK):
            seq.round()
        _sync(device)
        base.append((time.perf_counter() - t) / BLOCK)
        start[0] = time.perf_counter()

    sweep(task, lams, steps=steps, eval_every=steps, callback=callback, **kw)
    tokens = len(lams) * len(seeds) * batch_size * task.seq_len
    return float(np.median(bat)), float(np.median(base)), tokens, device


def _report(name, bat, seq, tokens, device):
    print(f"\n{name} on {device} ({torch.get_num_threads()} threads): batched {tokens / bat:,.0f} tokens/s "
          f"({bat * 1e3:.1f} ms/step), sequential loop {tokens / seq:,.0f} tokens/s ({seq * 1e3:.1f} ms/round), "
          f"{seq / bat:.2f}x")


def test_small_lm_sweep_tokens_per_second():
    """The report's LM setting: the batched sweep is at least as fast as the per-model loop."""
    task, model, _ = small_lm()
    bat, seq, tokens, device = _measure(task, model, (0.0, 0.1, 0.3, 1.0), (0, 1, 2), 16, torch.float32, 61)
    _report("small LM (V=128, 1x32, 12 models)", bat, seq, tokens, device)
    assert bat <= seq


@pytest.mark.parametrize("precision", ["strict", "bf16"])
def test_wide_lm_sweep_tokens_per_second_on_gpu(precision):
    """A GPU-sized setting, in strict float32 and in bf16 autocast (the sequential baseline is strict
    float32 in both); skipped without a GPU (CPU figures come from the test above)."""
    if resolve_device("auto").type != "cuda":
        pytest.skip("needs a CUDA device")
    task = SequenceTask(V=4096, s=1.0, predictability=0.8, lag=2, seq_len=128, n_train=8192, n_heldout=512, seed=0)
    model = Transformer(n_layer=4, n_head=4, d_model=256)
    bat, seq, tokens, device = _measure(task, model, (0.0, 0.1, 0.3, 1.0), (0, 1), 32, torch.float32, 41,
                                        precision=precision)
    _report(f"wide LM (V=4096, 4x256, 8 models, {precision})", bat, seq, tokens, device)
    assert bat <= seq
