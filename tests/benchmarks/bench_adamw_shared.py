"""Speed of the AdamW equilibrium of the factored bigram LM (T10). Run on demand:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m pytest -m benchmark tests/benchmarks/bench_adamw_shared.py -s

Size from IMBALANCE_BENCH_V (default 64; the targets are stated at V = 2,000, where one
evaluation of the stationarity map costs three dense C × V × d products). Targets: the AdamW
equilibrium in ≤ 5× the time of the L2 (T7) solve at the same size, and ≥ 10× faster than
training. Training time is measured per AdamW step (same process, same model, lr 1e-2) and
multiplied by the number of steps needed to cover the mean-field flow time the solver used
(flow_time / lr): a lower bound for any training run that reaches the same equilibrium.
"""

import os
import time

import pytest
import torch

from imbalance.corpus import bigram_counts, zipf_successor_stream
from imbalance.sim import BigramTask, FactoredBigram, sweep
from imbalance.theory.adamw_shared import factored_bigram_adamw_equilibrium
from imbalance.theory.factored_bigram import factored_bigram_equilibrium

pytestmark = pytest.mark.benchmark


def test_adamw_equilibrium_against_l2_solve_and_training():
    V = int(os.environ.get("IMBALANCE_BENCH_V", "64"))
    d, lam, B, lr = 16, 0.2, 64, 1e-2
    tok = zipf_successor_stream(V, 100 * V * V // 4, seed=0)
    C = bigram_counts(tok, V)
    task = BigramTask(C)
    model = FactoredBigram(width=d, init_scale=0.1)
    p = model.init(task, [torch.Generator().manual_seed(0)], torch.float64)
    init = (p["W"][0].numpy(), p["E"][0].numpy())
    t0 = time.perf_counter()
    eq = factored_bigram_adamw_equilibrium(C, lam, init=init, batch_size=B)
    t_adamw = time.perf_counter() - t0
    t0 = time.perf_counter()
    factored_bigram_equilibrium(C, lam, lam, rtol=1e-6)
    t_l2 = time.perf_counter() - t0
    steps = 500
    t0 = time.perf_counter()
    sweep(task, [lam], model=model, optimizer="adamw", steps=steps, batch_size=B, lr=lr, progress=False,
          eval_every=steps)
    per_step = (time.perf_counter() - t0) / steps
    t_train = per_step * eq.flow_time / lr
    print(f"\nV={V}, d={d}, λ={lam}, B={B}: AdamW equilibrium {t_adamw:.1f} s (flow time {eq.flow_time:.0f}, "
          f"residual {eq.residual:.1e}); L2 solve {t_l2:.2f} s (ratio {t_adamw / t_l2:.1f}); training "
          f"{per_step * 1e3:.2f} ms/step × {eq.flow_time / lr:.0f} steps = {t_train:.0f} s "
          f"(speed-up {t_train / t_adamw:.1f}×)")
    assert eq.residual < 1e-8
    assert t_adamw <= 5 * t_l2
    assert t_train >= 10 * t_adamw
