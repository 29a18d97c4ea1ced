"""The systematic gap behind ``bias`` in ``imbalance.reproduce.configs`` (run on demand:
``pytest -m benchmark tests/benchmarks/bench_run_bias.py -s``; several minutes on a CPU).

For each named run, train at its settings, at half the learning rate with twice the steps
(a learning-rate bias halves), and at twice the steps (a horizon bias shrinks); print the
largest relative gap |seed mean − theory|/|theory| and its seed standard error for each.
The benchmark asserts what the configs claim: at the run's own settings the gap is within
its stated ``bias`` plus three standard errors.
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
def test_gap_at_the_configured_settings(name, margins):
    run = getattr(configs, name)
    task = DET if margins else STO
    variants = {"as configured": run, "lr / 2, steps × 2": dataclasses.replace(run, lr=run.lr / 2, steps=2 * run.steps),
                "steps × 2": dataclasses.replace(run, steps=2 * run.steps)}
    gaps = {label: _gap(task, v, margins) for label, v in variants.items()}
    print(f"\n{name} (stated bias {run.bias:g}): " + "; ".join(f"{k}: max rel. gap {g:.4f} (se {s:.4f})"
                                                              for k, (g, s) in gaps.items()))
    g, s = gaps["as configured"]
    assert g <= run.bias + 3 * s


def test_feature_task_gap():
    """tests/sim/test_feature.py's run (linear softmax on fixed features, SGD, B = 512) at lr 0.5
    and at lr 0.25 with twice the steps: the seed-mean weights' gap to the L-BFGS optimum and the
    root-mean-square norm of the mean's noise, relative to ‖W*‖."""
    from imbalance.sim import FeatureTask, LinearSoftmax
    from imbalance.sim.validate import feature_lbfgs

    task = FeatureTask(K=10, dim=8, s=1.2, n=2000, sigma=0.5, R=1.0, seed=0)
    lams = [0.01, 0.1]
    ref = {lam: feature_lbfgs(task, lam, bias=True) for lam in lams}
    for lr, steps in ((0.5, 4000), (0.25, 8000)):
        res = sweep(task, lams, model=LinearSoftmax(bias=True), optimizer="sgd", steps=steps, batch_size=512, lr=lr,
                    seeds=(0, 1, 2), average_last=steps // 2, progress=False)
        for i, lam in enumerate(lams):
            W, _, lpt = ref[lam]
            Ws = res.params_avg["W"][i].numpy()  # (S, K, D)
            S, norm = Ws.shape[0], np.linalg.norm(W)
            gap = np.linalg.norm(Ws.mean(0) - W) / norm
            noise = np.sqrt(((Ws - Ws.mean(0)) ** 2).sum() / (S - 1) / S) / norm
            L = res.loss_per_token_avg[i]  # (S, K)
            print(f"\nfeatures lr {lr} λ {lam}: weight gap {gap:.5f} (noise {noise:.5f}); per-class loss gap "
                  f"{(np.abs(L.mean(0) - lpt) / lpt).max():.5f}")
            assert gap <= 0.005 + 4.5 * noise
