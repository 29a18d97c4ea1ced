"""The finite-learning-rate bias behind ``lr_bias`` in ``imbalance.reproduce.configs`` (run on
demand: ``pytest -m benchmark tests/benchmarks/bench_lr_bias.py -s``; minutes on a CPU).

For each named run, train at its learning rate and at half of it (twice the steps), and print
the largest relative gap |seed mean − theory|/|theory| and its seed standard error at both.
A gap that halves with the learning rate (beyond the standard error) is the stationary-state
bias the run's ``lr_bias`` must bound; the benchmark asserts only that the bias shrinks.
"""

import dataclasses

import numpy as np
import pytest

from imbalance.metrics import bucket_loss
from imbalance.reproduce import configs
from imbalance.sim import BigramTable, BigramTask, sweep
from imbalance.sim.validate import compare_bigram, compare_margins

pytestmark = pytest.mark.benchmark

DET = BigramTask.deterministic_zipf(**configs.MARGIN_TASK)
STO = BigramTask.stochastic_zipf(**configs.BUCKET_TASK)


def _gap(task, run, margins: bool):
    res = sweep(task, list(run.lams), model=BigramTable(), progress=False, **run.sweep_kwargs())
    if margins:
        c = compare_margins(res, task, eps=1e-8)
        th, sim = c.theory, c.sim                                   # (L, K), (L, S, K)
    else:
        c = compare_bigram(res, task, eps=1e-8)
        pairs = [(bucket_loss(c.theory[i], task.token_probs)[1], bucket_loss(c.sim[i], task.token_probs)[1])
                 for i in range(len(run.lams))]
        th, sim = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    rel = np.abs(sim.mean(-2) - th) / np.abs(th)
    se = sim.std(-2, ddof=1) / np.sqrt(sim.shape[-2]) / np.abs(th)
    i = np.unravel_index(np.argmax(rel), rel.shape)
    return float(rel[i]), float(se[i])


@pytest.mark.parametrize("name,margins", [("MARGINS_SGD", True), ("MARGINS_ADAMW", True), ("BUCKETS_SGD", False),
                                          ("BUCKETS_ADAMW", False)])
def test_bias_halves_with_the_learning_rate(name, margins):
    run = getattr(configs, name)
    half = dataclasses.replace(run, lr=run.lr / 2, steps=2 * run.steps)
    task = DET if margins else STO
    (g1, s1), (g2, s2) = _gap(task, run, margins), _gap(task, half, margins)
    print(f"\n{name}: lr {run.lr:g}: max rel. gap {g1:.4f} (se {s1:.4f}); lr {half.lr:g}: {g2:.4f} (se {s2:.4f}); "
          f"stated lr_bias {run.lr_bias:g}")
    assert g2 <= g1 + 3 * np.hypot(s1, s2)
