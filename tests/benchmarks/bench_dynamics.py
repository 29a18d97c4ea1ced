"""Token dynamics on demand (pytest -m benchmark tests/benchmarks/bench_dynamics.py -s): the
Kunstner & Bach (2025, arXiv 2505.19227) scaling of gradient descent vs sign descent, and the
cost of a predicted curve against the simulation it predicts (same process)."""

import time

import numpy as np
import pytest

from imbalance.reproduce.scaling import iterations_to_error
from imbalance.sim import BigramTable, BigramTask, sweep
from imbalance.theory.dynamics import bigram_trajectory

pytestmark = pytest.mark.benchmark


def test_gradient_descent_iterations_grow_almost_linearly_with_vocabulary():
    """Squared-loss bigram, Zipf(1): iterations to relative error 1e-2 for d = 1e2 … 1e4. GD's log-log
    slope is near 1 (measured 0.94); sign descent with the best constant step grows far slower."""
    ds = np.array([100, 1000, 10000])
    gd = np.array([iterations_to_error(int(d), "gd", eps=1e-2) for d in ds])
    sign = np.array([iterations_to_error(int(d), "sign", eps=1e-2) for d in ds])
    def slope(y):
        return np.polyfit(np.log(ds), np.log(y), 1)[0]
    print(f"\nGD {gd.tolist()} slope {slope(gd):.2f}; sign {sign.tolist()} slope {slope(sign):.2f}")
    assert slope(gd) > 0.85
    assert slope(sign) < 0.5 * slope(gd)


def test_predicted_curve_against_the_simulations_it_replaces():
    """Bigram, V = 256 stochastic Zipf task (dense q: 65,536 items), 2000 AdamW steps, B = 64, float64.
    The prediction is the expected curve; the simulation needs seeds to estimate it (8 seeds give the
    ≤ 1 % standard error the tests use). Printed: the ratio against one seed and against 8 seeds
    (measured on a shared 2-core CPU: 1.0-1.5 against one seed, 0.2 against 8); asserted: cheaper
    than the 8 seeds."""
    task = BigramTask.stochastic_zipf(256, 1.0, 0.7)
    times = {}
    for S in (1, 8):
        t = time.perf_counter()
        sweep(task, [0.01], model=BigramTable(), optimizer="adamw", steps=2000, batch_size=64, lr=1e-3,
              seeds=tuple(range(S)), progress=False)
        times[S] = time.perf_counter() - t
    t = time.perf_counter()
    bigram_trajectory(task.counts, 0.01, steps=2000, lr=1e-3, optimizer="adamw", batch_size=64)
    t_pred = time.perf_counter() - t
    print(f"\nsimulation 1 seed {times[1]:.2f} s, 8 seeds {times[8]:.2f} s, prediction {t_pred:.2f} s; ratio "
          f"{t_pred / times[1]:.2f} (1 seed), {t_pred / times[8]:.2f} (8 seeds)")
    assert t_pred < times[8]
