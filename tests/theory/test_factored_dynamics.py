"""Factored bigram (T7) gradient-descent trajectories: against torch's SGD on the raw objective
(full batch, exact) and against batched minibatch SGD simulations from the same starts."""

import numpy as np
import pytest
import torch

from imbalance._validate import as_count_matrix
from imbalance.metrics import bucket_loss
from imbalance.sim import BigramTask, FactoredBigram, sweep
from imbalance.theory.chebyshev import spectral_radius
from imbalance.theory.dynamics import eval_steps
from imbalance.theory.factored_dynamics import _Objective, factored_adamw_trajectory, factored_gd_trajectory


def test_matches_torch_sgd_on_the_raw_objective():
    """Two starts, λ_E ≠ λ_W, r ≠ 1: torch.optim.SGD with per-group weight decay on
    Σ_x P(x) CE(q_x, r W e_x) (autograd) gives the same per-token losses to rounding."""
    task = BigramTask.stochastic_zipf(7, 1.0, 0.5)
    rng = np.random.default_rng(3)
    E0, W0 = rng.normal(0, 0.4, (2, 7, 3)), rng.normal(0, 0.4, (2, 7, 3))
    r, lr, steps, lam_E, lam_W = 1.3, 0.4, 80, 0.02, 0.05
    traj = factored_gd_trajectory(task.counts, E0, W0, lam=lam_E, lam_W=lam_W, steps=steps, lr=lr, r=r, eval_every=10)
    J = task.joint
    pi = J.sum(0)
    for s in range(2):
        E = torch.tensor(E0[s], requires_grad=True)
        W = torch.tensor(W0[s], requires_grad=True)
        opt = torch.optim.SGD([{"params": [E], "weight_decay": lam_E}, {"params": [W], "weight_decay": lam_W}], lr=lr)
        Jt = torch.tensor(J)
        curve = []
        for t in range(steps + 1):
            logp = torch.log_softmax(r * E @ W.T, dim=1)
            if t in set(eval_steps(steps, 10)):
                curve.append((-(Jt * logp).sum(0) / torch.tensor(pi)).detach().numpy())
            if t == steps:
                break
            opt.zero_grad()
            (-(Jt * logp).sum()).backward()
            opt.step()
        np.testing.assert_allclose(traj.loss_per_token[s], np.stack(curve), rtol=1e-10)


def test_sgd_curve_matches_simulation_from_the_same_starts():
    """Minibatch SGD (B = 64, lr 0.25, λ = 0.003, width 8, 8 seeds) against the gradient-descent path
    from each seed's own start, per log3 bucket, paired by seed, at every logged step after the
    first two. Stated bias: the objective is not convex, and the minibatch noise shifts when a seed
    leaves a saddle; measured here the paired gap reaches 1.6 % (up to 6 paired standard errors at
    isolated steps), so the check is |gap| ≤ 4 SE + 2 % of the loss, and within the 3 % claimed."""
    task = BigramTask.stochastic_zipf(16, 1.0, 0.7)
    model = FactoredBigram(width=8, init_scale=0.3)
    S, steps, B, lr, lam = 8, 3000, 64, 0.25, 0.003
    res = sweep(task, [lam], model=model, optimizer="sgd", steps=steps, batch_size=B, lr=lr, seeds=tuple(range(S)),
                eval_every=150, progress=False)
    init = model.init(task, [torch.Generator().manual_seed(s) for s in range(S)], torch.float64)
    traj = factored_gd_trajectory(task.counts, init["E"].numpy(), init["W"].numpy(), lam=lam, steps=steps, lr=lr,
                                  eval_every=150)
    pi = task.token_probs
    _, sim = bucket_loss(res.curve_loss_per_token[:, 0], pi)  # (n_eval, S, n_b)
    _, pred = bucket_loss(np.moveaxis(traj.loss_per_token, 0, 1), pi)  # (n_eval, S, n_b)
    np.testing.assert_allclose(sim[0], pred[0], rtol=1e-12)  # the same starts
    gap = (sim - pred).mean(1)[2:]
    se = (sim - pred).std(1, ddof=1)[2:] / np.sqrt(S)
    ref = pred.mean(1)[2:]
    assert (np.abs(gap) <= 4 * se + 0.02 * ref).all(), np.abs(gap) / ref
    assert (np.abs(gap) / ref).max() < 0.03


def test_bad_starts_are_named():
    with pytest.raises(ValueError, match="E0"):
        factored_gd_trajectory(np.eye(3), np.zeros((4, 2)), np.zeros((3, 2)), lam=0.1, steps=5, lr=0.1)
    with pytest.raises(ValueError, match="lam"):
        factored_gd_trajectory(np.eye(3), np.zeros((3, 2)), np.zeros((3, 2)), lam=-0.1, steps=5, lr=0.1)


def test_chebyshev_flow_matches_the_step_by_step_recursion():
    """The adaptive Runge–Kutta–Chebyshev gradient flow read at time η·t against the literal
    recursion θ ← θ − η∇F (an independent computation: one full gradient per step). Their
    difference is the O(η) gap between gradient descent and its flow, not integration error:
    measured 0.77 % (rtol 1e-2) and 0.87 % (rtol 1e-3) per log3 bucket at η = 0.5, and 0.33 % against
    the recursion at η/4 with 4× the steps (float32 gradients, the default; float64 gives the same
    figures). Asserted: 1 %, with at least 5× fewer gradients than steps (measured 230 for 1,500)."""
    task = BigramTask.stochastic_zipf(40, 1.0, 0.7)
    rng = np.random.default_rng(0)
    E0, W0 = rng.normal(0, 0.1, (2, 40, 6)), rng.normal(0, 0.1, (2, 40, 6))
    kw = dict(lam=0.002, lam_W=0.001, steps=1500, lr=0.5, eval_every=100)
    ref = factored_gd_trajectory(task.counts, E0, W0, **kw)
    fast = factored_gd_trajectory(task.counts, E0, W0, integrator="rkc", rtol=1e-2, **kw)
    pi = task.token_probs
    _, b_ref = bucket_loss(ref.loss_per_token, pi)  # (S, n_eval, n_b)
    _, b_fast = bucket_loss(fast.loss_per_token, pi)
    np.testing.assert_allclose(b_fast, b_ref, rtol=1e-2)
    assert fast.gradient_evaluations * 5 < kw["steps"], fast.gradient_evaluations


def test_adamw_flow_full_batch_limit_is_torch_adamw_on_the_raw_objective():
    """With B → ∞ (E[g²] = E[g]²) the mean-field recursion is deterministic AdamW on the expected
    loss: torch.optim.AdamW (decoupled decay, autograd on Σ J log p) from the same start gives the
    same per-token losses (B = 10¹² leaves a 1e-12 relative difference in E[g²])."""
    task = BigramTask.stochastic_zipf(6, 1.0, 0.5)
    rng = np.random.default_rng(5)
    E0, W0 = rng.normal(0, 0.4, (6, 3)), rng.normal(0, 0.4, (6, 3))
    r, lr, steps, lam_E, lam_W = 1.2, 0.02, 60, 0.3, 0.1
    traj = factored_adamw_trajectory(task.counts, E0, W0, lam=lam_E, lam_W=lam_W, steps=steps, lr=lr, r=r,
                                     batch_size=10 ** 12, betas=(0.8, 0.95), eps=1e-6, eval_every=10)
    Jt = torch.tensor(task.joint)
    E = torch.tensor(E0, requires_grad=True)
    W = torch.tensor(W0, requires_grad=True)
    opt = torch.optim.AdamW([{"params": [E], "weight_decay": lam_E}, {"params": [W], "weight_decay": lam_W}], lr=lr,
                            betas=(0.8, 0.95), eps=1e-6)
    curve = []
    for t in range(steps + 1):
        logp = torch.log_softmax(r * E @ W.T, dim=1)
        if t % 10 == 0:
            curve.append((-(Jt * logp).sum(0) / Jt.sum(0)).detach().numpy())
        if t == steps:
            break
        opt.zero_grad()
        (-(Jt * logp).sum()).backward()
        opt.step()
    np.testing.assert_allclose(traj.loss_per_token[0], np.stack(curve), rtol=1e-8)


def _gathered_loss(C, E, W, r):
    """ℓ_v = Σ_x J(x, v)(−log p(v|x))/π_v in float64 by gathering the observed pairs."""
    coo = C.tocoo()
    joint = coo.data / coo.data.sum()
    Z = r * (E @ W.transpose(0, 2, 1))
    m = Z.max(-1, keepdims=True)
    lse = np.log(np.exp(Z - m).sum(-1)) + m[..., 0]
    nll = lse[:, coo.row] - Z[:, coo.row, coo.col]
    pi = np.bincount(coo.col, weights=joint, minlength=C.shape[1])
    return np.stack([np.bincount(coo.col, weights=joint * row, minlength=C.shape[1]) for row in nll]) / pi


@pytest.mark.parametrize("density", ["dense", "sparse"])
def test_loss_per_token_in_both_precisions_matches_the_gathered_pairs(density):
    """The per-token loss (dense contraction when J is dense, gather when sparse) in float64 and
    float32 against the float64 gather over the observed pairs: to 1e-12 and 1e-6 relative."""
    rng = np.random.default_rng(2)
    if density == "dense":
        counts = BigramTask.stochastic_zipf(300, 1.0, 0.7).counts
    else:
        counts = np.zeros((300, 300))
        idx = rng.integers(0, 300, (900, 2))
        counts[idx[:, 0], idx[:, 1]] = rng.integers(1, 50, 900)
        counts[np.arange(300), np.arange(300)] += 1  # every token and context seen
    C = as_count_matrix(counts)
    E, W = rng.normal(0, 0.5, (2, 300, 12)), rng.normal(0, 0.5, (2, 300, 12))
    ref = _gathered_loss(C, E, W, 1.7)
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-6)):
        obj = _Objective(C, 1.7, 0.01, 0.02, dtype)
        assert obj.dense == (density == "dense")
        np.testing.assert_allclose(obj.loss_per_token(E, W), ref, rtol=rtol)


def test_float32_gradient_and_spectral_radius_match_float64():
    """The gradient computed in float32 against float64 (1e-5 relative in norm), and the power
    iteration's ρ of the flow it drives (with float32's finite-difference step) to 1e-3."""
    task = BigramTask.stochastic_zipf(200, 1.0, 0.7)
    rng = np.random.default_rng(4)
    E, W = rng.normal(0, 0.3, (1, 200, 8)), rng.normal(0, 0.3, (1, 200, 8))
    C = as_count_matrix(task.counts)
    objs = {dt: _Objective(C, 1.0, 1e-3, 2e-3, dt) for dt in (np.float64, np.float32)}

    def flow(obj):
        def f(y):
            gE, gW = obj.gradient(y[:E.size].reshape(E.shape), y[E.size:].reshape(W.shape))
            return -np.concatenate([gE.ravel(), gW.ravel()])
        return f
    f64, f32 = flow(objs[np.float64]), flow(objs[np.float32])
    y = np.concatenate([E.ravel(), W.ravel()])
    g64, g32 = f64(y), f32(y)
    assert g32.dtype == np.float64
    assert np.linalg.norm(g32 - g64) < 1e-5 * np.linalg.norm(g64)
    v0 = rng.standard_normal(y.size)
    rho64, _ = spectral_radius(f64, y, g64, v0, iters=30)
    rho32, _ = spectral_radius(f32, y, g32, v0, iters=30, eps=np.finfo(np.float32).eps)
    assert abs(rho32 / rho64 - 1) < 1e-3, (rho32, rho64)


def test_flow_in_float32_matches_float64():
    """The Chebyshev flow with float32 gradients (the default) against float64 ones: the same
    per-token curves within the flow's own tolerance (rtol 1e-3 here)."""
    task = BigramTask.stochastic_zipf(40, 1.0, 0.7)
    rng = np.random.default_rng(0)
    E0, W0 = rng.normal(0, 0.1, (2, 40, 6)), rng.normal(0, 0.1, (2, 40, 6))
    kw = dict(lam=0.002, steps=1500, lr=0.5, eval_every=100, integrator="rkc", rtol=1e-3)
    a = factored_gd_trajectory(task.counts, E0, W0, **kw)
    b = factored_gd_trajectory(task.counts, E0, W0, dtype="float64", **kw)
    np.testing.assert_allclose(a.loss_per_token, b.loss_per_token, rtol=1e-3)


@pytest.mark.parametrize("dtype", ["float16", "int", 3, np.int64, True, np.zeros(2)])
def test_bad_dtype_is_named(dtype):
    with pytest.raises(ValueError, match="dtype"):
        factored_gd_trajectory(np.eye(3), np.zeros((3, 2)), np.zeros((3, 2)), lam=0.1, steps=5, lr=0.1, dtype=dtype)
