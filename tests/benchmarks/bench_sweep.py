"""Speed of the batched sweep against baselines measured in the same process.

Run: ``pytest -m benchmark tests/benchmarks/bench_sweep.py -s``. Single-threaded
(torch.set_num_threads(1)) unless stated; steady state (the fused kernels are compiled in a warm-up
run, not timed). The baseline runs *interleaved* with the sweep, so both see the same
load on a shared machine: after every ``block`` batched steps a callback runs ``block``
baseline rounds (one step of each sequential model, or one pass of the memory-traffic
bound); each time is the median over steps or rounds.

Blocks, not single steps, where the working set fits in cache: alternating one batched
step (24 MB of float64 table and Adam state in (a)) with one round of the sequential
loop evicts the sweep's state every step, which a real sweep never suffers; the median
over a block of 20 steps is the steady state of each. Step by step (``block=1``) is still
printed as a second figure, not asserted.
"""

import time

import numpy as np
import pytest
import torch

from imbalance.sim import BigramTable, BigramTask, sweep

pytestmark = pytest.mark.benchmark

DEFAULT_THREADS = torch.get_num_threads()


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


def interleaved(task, lams, steps, batch_size, dtype, baseline, lr=1e-2, block=1):
    """(median batched step, median baseline round) in seconds; ``block`` steps of each in turn."""
    kw = dict(model=BigramTable(), optimizer="adamw", batch_size=batch_size, lr=lr, dtype=dtype,
              progress=False, fused=True, device="cpu")
    sweep(task, lams, steps=6, eval_every=6, **kw)  # warm-up: compiles the fused kernels
    baseline.round()
    bat, base, start = [], [], [None]

    def callback(step):
        now = time.perf_counter()
        if start[0] is not None and step < steps:  # the last step also evaluates: not timed
            bat.append(now - start[0])
        if step % block == 0:
            for _ in range(block):
                t = time.perf_counter()
                baseline.round()
                base.append(time.perf_counter() - t)
        start[0] = time.perf_counter()

    sweep(task, lams, steps=steps, eval_every=steps, callback=callback, **kw)
    return float(np.median(bat)), float(np.median(base))


@pytest.mark.parametrize("threads", [1, DEFAULT_THREADS])
def test_overhead_bound_sweep_is_5x_faster(threads):
    """(a) 16 λ, bigram V = 256, batch 256, float64: batched ≥ 5× the sequential loop, both at
    1 thread and at torch's default thread count (what a user gets)."""
    torch.set_num_threads(threads)
    task = BigramTask.stochastic_zipf(256, 1.0, 0.5)
    lams = np.logspace(-3, 0, 16)
    bat, seq = interleaved(task, lams, 200, 256, torch.float64,
                           SequentialAdamW(task, lams, 256, torch.float64, 1e-2), block=20)
    bat1, seq1 = interleaved(task, lams, 60, 256, torch.float64,
                             SequentialAdamW(task, lams, 256, torch.float64, 1e-2), block=1)
    print(f"\n(a) {threads} thread(s), blocks of 20: sequential {seq * 1e3:.2f} ms/step, "
          f"batched {bat * 1e3:.2f} ms/step, "
          f"speed-up {seq / bat:.2f}x (step by step, cache evicted: {seq1 / bat1:.2f}x)")
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


def _wall(task, lams, steps, fused):
    t = time.perf_counter()
    sweep(task, lams, model=BigramTable(), optimizer="adamw", steps=steps, batch_size=256, lr=1e-2, progress=False,
          fused=fused, device="cpu", eval_every=steps)
    return time.perf_counter() - t


def test_fused_auto_threshold():
    """(c) The ``fused="auto"`` rule, measured as a user calls ``sweep`` (compilation included; run in a
    fresh process, as torch's in-process compile cache would otherwise hide it): 16 bigram tables,
    V = 256, batch 256, float64, 1 thread, eager and fused at 100 and 400 steps. Prints the
    per-step saving and the compilation cost, and the break-even in entry-updates; asserts that the
    rule's threshold (5·10⁸) lies beyond the measured break-even, so "auto" compiles only where it pays."""
    from imbalance.sim.settings import _AUTO_FUSED_MIN_UPDATES

    task = BigramTask.stochastic_zipf(256, 1.0, 0.5)
    lams = np.logspace(-3, 0, 16)
    torch._dynamo.reset()
    first = _wall(task, lams, 100, True)  # 100 fused steps, compilation included
    f100, f400 = _wall(task, lams, 100, True), _wall(task, lams, 400, True)  # compiled already
    e100, e400 = _wall(task, lams, 100, False), _wall(task, lams, 400, False)
    per_eager, per_fused = (e400 - e100) / 300, (f400 - f100) / 300
    compile_s = first - f100
    entries = 16 * 256 * 256
    even = compile_s / max(per_eager - per_fused, 1e-12) * entries
    print(f"\n(c) eager {per_eager * 1e3:.2f} ms/step, fused {per_fused * 1e3:.2f} ms/step, compilation "
          f"{compile_s:.1f} s: break-even at {even:.2e} entry-updates (auto threshold {_AUTO_FUSED_MIN_UPDATES:.0e})")
    assert per_fused < per_eager
    assert _AUTO_FUSED_MIN_UPDATES >= even
