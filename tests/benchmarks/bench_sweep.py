"""Speed of the batched sweep against baselines measured in the same process.

Run: ``pytest -m benchmark tests/benchmarks/bench_sweep.py -s``. Single-threaded
(torch.set_num_threads(1)); steady state (the fused AdamW update is compiled in a warm-up
run, not timed). The baseline runs *interleaved* with the sweep: after every batched step
a callback runs one baseline round (one step of each sequential model, or one pass of
the memory-traffic bound), so both see the same load on a shared machine; each time is
the median over rounds.
"""

import time

import numpy as np
import pytest
import torch

from imbalance.sim import BigramTable, BigramTask, sweep

pytestmark = pytest.mark.benchmark


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class SequentialAdamW:
    """The plain per-model loop: one table per λ, torch.optim.AdamW, autograd."""

    def __init__(self, task, lams, batch_size, dtype, lr):
        self.task, self.B = task, batch_size
        self.models = []
        for lam in lams:
            W = torch.zeros(task.n_contexts, task.vocab_size, dtype=dtype, requires_grad=True)
            self.models.append((torch.Generator().manual_seed(0), W,
                                torch.optim.AdamW([W], lr=lr, weight_decay=float(lam))))

    def round(self):
        for g, W, opt in self.models:
            ctx, tgt = self.task.sample(g, self.B)
            loss = torch.nn.functional.cross_entropy(self.task.r * W[ctx], tgt)
            opt.zero_grad()
            loss.backward()
            opt.step()


class MemoryBound:
    """Read and write once each of parameters, gradients, exp_avg, exp_avg_sq (in place)."""

    def __init__(self, numel, dtype):
        self.buf = torch.ones(4, numel, dtype=dtype)

    def round(self):
        self.buf.neg_()


def interleaved(task, lams, steps, batch_size, dtype, baseline, lr=1e-2):
    """(median batched step, median baseline round) in seconds."""
    kw = dict(model=BigramTable(), optimizer="adamw", batch_size=batch_size, lr=lr, dtype=dtype,
              progress=False, fused=True, device="cpu")
    sweep(task, lams, steps=3, eval_every=3, **kw)  # warm-up: compiles the fused update
    baseline.round()
    bat, base, start = [], [], [None]

    def callback(step):
        now = time.perf_counter()
        if start[0] is not None and step < steps:  # the last step also evaluates: not timed
            bat.append(now - start[0])
        baseline.round()
        base.append(time.perf_counter() - now)
        start[0] = time.perf_counter()

    sweep(task, lams, steps=steps, eval_every=steps, callback=callback, **kw)
    return float(np.median(bat)), float(np.median(base))


def test_overhead_bound_sweep_is_5x_faster():
    """(a) 16 λ, bigram V = 256, batch 256, float64: batched ≥ 5× the sequential loop."""
    task = BigramTask.stochastic_zipf(256, 1.0, 0.5)
    lams = np.logspace(-3, 0, 16)
    bat, seq = interleaved(task, lams, 100, 256, torch.float64,
                           SequentialAdamW(task, lams, 256, torch.float64, 1e-2))
    print(f"\n(a) 1 thread: sequential {seq * 1e3:.2f} ms/step, batched {bat * 1e3:.2f} ms/step, "
          f"speed-up {seq / bat:.2f}x")
    assert seq / bat >= 5.0


def test_memory_bound_sweep_is_near_bandwidth():
    """(b) 8 λ, V = 2048, batch 512, float32: within 2× of the memory-traffic bound, ≥ sequential."""
    V = 2048
    task = BigramTask.stochastic_zipf(V, 1.0, 0.5)
    lams = np.logspace(-3, 0, 8)
    bat, bound = interleaved(task, lams, 12, 512, torch.float32, MemoryBound(8 * V * V, torch.float32))
    bat2, seq = interleaved(task, lams, 4, 512, torch.float32, SequentialAdamW(task, lams, 512, torch.float32, 1e-2))
    print(f"\n(b) 1 thread: bound {bound * 1e3:.1f} ms/step, batched {bat * 1e3:.1f} ms/step "
          f"({bat / bound:.2f}x bound); sequential {seq * 1e3:.1f} ms/step vs batched {bat2 * 1e3:.1f} "
          f"({seq / bat2:.2f}x)")
    assert bat <= 2.0 * bound
    assert bat2 <= seq
