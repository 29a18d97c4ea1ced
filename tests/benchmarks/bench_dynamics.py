"""Token dynamics on demand (pytest -m benchmark tests/benchmarks/bench_dynamics.py -s): the
Kunstner & Bach (2025, arXiv 2505.19227) scaling of gradient descent vs sign descent, and the
cost of a predicted curve against the simulation it predicts (same process)."""

import time

import numpy as np
import pytest
import torch

from imbalance.metrics import bucket_loss
from imbalance.reproduce.scaling import fit_exponent, iterations_to_error
from imbalance.sim import BigramTable, BigramTask, FactoredBigram, sweep
from imbalance.theory.dynamics import bigram_trajectory
from imbalance.theory.factored_dynamics import factored_adamw_trajectory, factored_gd_trajectory

pytestmark = pytest.mark.benchmark


def test_gradient_descent_iterations_grow_almost_linearly_with_vocabulary():
    """Squared-loss bigram, Zipf(1): iterations to relative error 1e-2 for d = 1e2 … 1e5. GD's fitted
    exponent is near 1 (measured 0.95); sign descent with Kunstner & Bach's step protocol and averaged
    dynamics grows as √d (measured 0.499, equal to its closed form within one iteration)."""
    ds = [100, 1000, 10000, 100000]
    gd = [iterations_to_error(d, "gd", eps=1e-2) for d in ds]
    sign = [iterations_to_error(d, "sign", eps=1e-2) for d in ds]
    s_gd, s_sign = fit_exponent(ds, gd), fit_exponent(ds, sign)
    print(f"\nGD {gd} exponent {s_gd}; sign {sign} exponent {s_sign}")
    assert s_gd[0] > 0.85
    assert abs(s_sign[0] - 0.5) < 0.02


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


@pytest.mark.parametrize("steps, batch_size", [(1000, 64), (1000, 1024), (10000, 64), (10000, 1024)])
def test_factored_flow_against_training_at_V_2000(steps, batch_size):
    """Factored bigram, stochastic Zipf task V = 2,000 (dense q), width 64, SGD lr 0.5, λ = 1e-3,
    logged 20 times, one seed: the Runge–Kutta–Chebyshev gradient flow from the same start against
    the training run (same process). 1,000 steps are half a decay time 1/(ηλ) = 2,000 steps;
    10,000 steps (five decay times) reach the weight-decay equilibrium. The flow's cost does not
    depend on B, and grows with the run's length far slower than training's (RKC's stages grow like
    the square root of the step); one full gradient costs about n_ctx/B minibatch steps in
    arithmetic. Printed: the ratio and the largest per-bucket gap to the (single-seed) run after the
    second log. Measured on a 2-core CPU (float32 gradients, the default): 1,000 steps — B = 64
    ratio 0.63–0.68 (130 gradients), gap 7.9 % (the flow has no gradient noise; the gap shrinks with B); B = 1024
    ratio 0.115–0.13, gap 2.7 %; 10,000 steps (412 gradients) — B = 64 ratio 0.40–0.43, gap 4.8 %;
    B = 1024 ratio 0.046–0.047, gap 1.2 %. The 0.1 target therefore holds for the run to
    equilibrium at B = 1024 and at neither length at B = 64. Asserted: the gap below 3 % at
    B = 1024, and the ratio below 0.1 for the run to equilibrium at B = 1024."""
    task = BigramTask.stochastic_zipf(2000, 1.0, 0.7)
    model = FactoredBigram(width=64, init_scale=0.1)
    lr, lam, every = 0.5, 1e-3, steps // 20
    t = time.perf_counter()
    res = sweep(task, [lam], model=model, optimizer="sgd", steps=steps, batch_size=batch_size, lr=lr, seeds=(0,),
                eval_every=every, progress=False)
    t_sim = time.perf_counter() - t
    init = model.init(task, [torch.Generator().manual_seed(0)], torch.float64)
    t = time.perf_counter()
    traj = factored_gd_trajectory(task.counts, init["E"].numpy(), init["W"].numpy(), lam=lam, steps=steps, lr=lr,
                                  eval_every=every, integrator="rkc", rtol=1e-2)
    t_pred = time.perf_counter() - t
    _, sim = bucket_loss(res.curve_loss_per_token[:, 0, 0], task.token_probs)  # (n_eval, n_b)
    _, pred = bucket_loss(traj.loss_per_token[0], task.token_probs)  # (n_eval, n_b)
    gap = np.abs(sim / pred - 1.0)[2:].max()
    print(f"\n{steps} steps, B = {batch_size}: training {t_sim:.1f} s, flow {t_pred:.1f} s "
          f"({traj.gradient_evaluations} gradients), ratio {t_pred / t_sim:.3f}; largest bucket gap after the "
          f"second log {gap:.3%}")
    if batch_size >= 1024:
        assert gap < 0.03
        if steps * lr * lam >= 5:  # at the equilibrium
            assert t_pred / t_sim < 0.1


@pytest.mark.parametrize("batch_size", [64, 8])
def test_factored_adamw_flow_against_batched_adamw(batch_size):
    """Factored bigram (stochastic Zipf V = 16, width 8, init 0.3), AdamW lr 3e-3, λ = 0.1, 2,000
    steps, 8 seeds: the mean-field AdamW recursion from each seed's start against the batched
    simulation, per log3 bucket, paired by seed. Measured: B = 64 (B·π from 19 to 1.2) within
    0.83 % at every logged step (≤ 3.9 paired standard errors); B = 8 (B·π from 2.4 to 0.15)
    within 2.6 % (≤ 4.5 SE) — the mean-field bias grows as tokens appear in fewer batches.
    Asserted: within 3 % after the third logged step."""
    task = BigramTask.stochastic_zipf(16, 1.0, 0.7)
    model = FactoredBigram(width=8, init_scale=0.3)
    S, steps, lr, lam = 8, 2000, 3e-3, 0.1
    res = sweep(task, [lam], model=model, optimizer="adamw", steps=steps, batch_size=batch_size, lr=lr,
                seeds=tuple(range(S)), eval_every=100, progress=False)
    init = model.init(task, [torch.Generator().manual_seed(s) for s in range(S)], torch.float64)
    traj = factored_adamw_trajectory(task.counts, init["E"].numpy(), init["W"].numpy(), lam=lam, steps=steps, lr=lr,
                                     batch_size=batch_size, eval_every=100)
    _, sim = bucket_loss(res.curve_loss_per_token[:, 0], task.token_probs)  # (n_eval, S, n_b)
    _, pred = bucket_loss(np.moveaxis(traj.loss_per_token, 0, 1), task.token_probs)  # (n_eval, S, n_b)
    gap = np.abs((sim - pred).mean(1)) / pred.mean(1)  # (n_eval, n_b)
    print(f"\nB = {batch_size}: largest gap per logged step {np.round(gap.max(1), 4).tolist()}")
    assert gap[3:].max() < 0.03
