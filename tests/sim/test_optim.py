"""Batched optimisers against torch.optim, one model at a time (float64, 100 steps)."""

import math

import numpy as np
import pytest
import torch

from imbalance.sim.optim import BatchedAdamW, BatchedSGD, RowGrad, frequency_decay_scale, make_optimizer

STEPS = 100


def _loss(W, X, y):
    """Softmax CE of a (…, V, D) table on features X (N, D), labels y (N,)."""
    logits = X @ W.transpose(-1, -2)  # (…, N, V)
    targets = y.repeat(logits.numel() // logits.shape[-1] // y.numel())
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="sum") / y.numel()


def _problem(seed=0, V=7, D=5, N=32):
    g = torch.Generator().manual_seed(seed)
    W0 = torch.randn(V, D, generator=g, dtype=torch.float64)
    data = [(torch.randn(N, D, generator=g, dtype=torch.float64), torch.randint(V, (N,), generator=g))
            for _ in range(STEPS)]
    return W0, data


def _torch_run(opt_cls, W0, data, **kw):
    W = W0.clone().requires_grad_(True)
    opt = opt_cls([W], **kw)
    for X, y in data:
        opt.zero_grad()
        _loss(W, X, y).backward()
        opt.step()
    return W.detach()


def _batched_run(opt_cls, W0, data, lams, **kw):
    M = len(lams)
    W = W0.expand(M, *W0.shape).clone()  # (M, V, D)
    opt = opt_cls({"W": W}, lams, **kw)
    for X, y in data:
        Wg = W.clone().requires_grad_(True)
        loss = sum(_loss(Wg[m], X, y) for m in range(M))  # models are independent
        (g,) = torch.autograd.grad(loss, [Wg])
        opt.step({"W": g})
    return W


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("lr,betas,eps", [(1e-2, (0.9, 0.999), 1e-8), (3e-2, (0.5, 0.9), 1e-3)])
def test_adamw_matches_torch(lr, betas, eps):
    W0, data = _problem()
    lams = [0.0, 0.1, 2.0]
    got = _batched_run(BatchedAdamW, W0, data, lams, lr=lr, betas=betas, eps=eps)
    for m, lam in enumerate(lams):
        ref = _torch_run(torch.optim.AdamW, W0, data, lr=lr, betas=betas, eps=eps, weight_decay=lam)
        assert _rel(got[m], ref) < 1e-10
        assert _rel(ref, W0) > 1e-3  # the run moved the weights


def test_sgd_matches_torch():
    W0, data = _problem(1)
    lams = [0.0, 0.05, 1.0]
    got = _batched_run(BatchedSGD, W0, data, lams, lr=0.3)
    for m, lam in enumerate(lams):
        ref = _torch_run(torch.optim.SGD, W0, data, lr=0.3, weight_decay=lam)
        assert _rel(got[m], ref) < 1e-10
        assert _rel(ref, W0) > 1e-3


@pytest.mark.parametrize("name,cls,kw", [("adamw", torch.optim.AdamW, {}), ("sgd", torch.optim.SGD, {})])
def test_per_row_decay_equals_param_groups(name, cls, kw):
    """Per-row decay scale = torch.optim with one param group (own weight_decay) per row."""
    W0, data = _problem(2)
    V = W0.shape[0]
    scale = torch.linspace(0.2, 3.0, V, dtype=torch.float64)
    lam = 0.3
    W = W0.unsqueeze(0).clone()  # (1, V, D)
    opt = make_optimizer(name, {"W": W}, [lam], lr=0.05, decay_scale={"W": scale.unsqueeze(1)})
    rows = [W0[i].clone().requires_grad_(True) for i in range(V)]
    ref = cls([{"params": [r], "weight_decay": lam * float(scale[i])} for i, r in enumerate(rows)], lr=0.05)
    for X, y in data:
        Wg = W[0].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_loss(Wg, X, y), [Wg])
        opt.step({"W": g.unsqueeze(0)})
        ref.zero_grad()
        _loss(torch.stack(rows), X, y).backward()
        ref.step()
    assert _rel(W[0], torch.stack(rows).detach()) < 1e-10


def test_undecayed_parameter_is_not_decayed():
    p = {"W": torch.ones(2, 3, dtype=torch.float64), "b": torch.ones(2, 3, dtype=torch.float64)}
    opt = BatchedAdamW(p, [0.5, 0.5], lr=0.1, decayed=("W",))
    zero = {k: torch.zeros_like(v) for k, v in p.items()}
    opt.step(zero)
    assert torch.equal(p["b"], torch.ones(2, 3, dtype=torch.float64))
    assert torch.allclose(p["W"], torch.full((2, 3), 1 - 0.1 * 0.5, dtype=torch.float64))


def test_state_dict_roundtrip_continues_identically():
    W0, data = _problem(3)
    W1 = W0.unsqueeze(0).clone()
    a = BatchedAdamW({"W": W1}, [0.1], lr=0.01)
    grads = [torch.randn(1, *W0.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
             for i in range(6)]
    for g in grads[:3]:
        a.step({"W": g})
    W2 = W1.clone()
    b = BatchedAdamW({"W": W2}, [0.1], lr=0.01)
    b.load_state_dict({k: (v.clone() if torch.is_tensor(v) else v) for k, v in a.state_dict().items()})
    for g in grads[3:]:
        a.step({"W": g})
        b.step({"W": g})
    assert torch.equal(W1, W2)


def test_bad_input():
    p = {"W": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match="lr"):
        BatchedSGD(p, [0.1, 0.1], lr=-1)
    with pytest.raises(ValueError, match="lams"):
        BatchedSGD(p, [0.1, float("nan")], lr=1)
    with pytest.raises(ValueError, match="models on axis 0"):
        BatchedSGD(p, [0.1], lr=1)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("adam", p, [0.1, 0.1], lr=1)
    with pytest.raises(ValueError, match="betas"):
        BatchedAdamW(p, [0.1, 0.1], lr=1, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="decay_scale"):
        BatchedSGD(p, [0.1, 0.1], lr=1, decay_scale={"W": torch.ones(4)})
    with pytest.raises(ValueError, match="decayed"):
        BatchedSGD(p, [0.1, 0.1], lr=1, decayed=("b",))
    with pytest.raises(ValueError, match="batch_size"):
        frequency_decay_scale([0.5, 0.5], "adamw")


def test_frequency_decay_scale_equalises_kappa():
    P = np.array([0.6, 0.3, 0.1])
    s = frequency_decay_scale(P, "sgd")
    assert np.allclose(P / s, (P / s)[0]) and np.isclose(s.mean(), 1.0)
    B = 8
    s = frequency_decay_scale(P, "adamw", batch_size=B)
    rho = np.sqrt(B * P / (1 + (B - 1) * P))
    assert np.allclose(rho / s, (rho / s)[0])


def _row_grads(M, C, V, n_steps, seed=4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_steps):
        rows = torch.randperm(M * C, generator=g)[: M * C // 3].sort().values
        out.append(RowGrad(rows, torch.randn(rows.numel(), V, generator=g, dtype=torch.float64)))
    return out


@pytest.mark.parametrize("name,cls", [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_row_gradients_match_torch_with_dense_gradients(name, cls):
    """Row-sparse gradients (bigram fast path) = torch.optim fed the dense gradient."""
    M, C, V = 2, 6, 5
    lams = [0.05, 0.7]
    W0 = torch.randn(M, C, V, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    W = W0.clone()
    opt = make_optimizer(name, {"W": W}, lams, lr=0.02)
    steps = _row_grads(M, C, V, STEPS)
    for rg in steps:
        opt.step({"W": rg})
    for m, lam in enumerate(lams):
        ref = W0[m].clone().requires_grad_(True)
        ropt = cls([ref], lr=0.02, weight_decay=lam)
        for rg in steps:
            ref.grad = rg.dense(W0)[m]
            ropt.step()
        assert _rel(W[m], ref.detach()) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("sparse,betas", [(False, (0.9, 0.999)), (True, (0.9, 0.999)), (True, (0.0, 0.99)),
                                          (True, (0.8, 0.0))])
def test_fused_adamw_matches_torch(sparse, betas):
    """The torch.compile'd one-pass update, dense and row-sparse (rows read through a slot map),
    against torch.optim.AdamW."""
    M, C, V = 2, 6, 5
    lams = [0.05, 0.7]
    W0 = torch.randn(M, C, V, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    W = W0.clone()
    opt = BatchedAdamW({"W": W}, lams, lr=0.02, betas=betas, fused=True)
    steps = _row_grads(M, C, V, 30, seed=5)
    for rg in steps:
        opt.step({"W": rg if sparse else rg.dense(W0)})
    for m, lam in enumerate(lams):
        ref = W0[m].clone().requires_grad_(True)
        ropt = torch.optim.AdamW([ref], lr=0.02, betas=betas, weight_decay=lam)
        for rg in steps:
            ref.grad = rg.dense(W0)[m]
            ropt.step()
        assert _rel(W[m], ref.detach()) < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("scale_shape", [(6, 1), (6, 5)])
def test_fused_row_update_with_per_row_decay_matches_torch(scale_shape):
    """Per-row (T6a) and per-entry decay scales in the fused row kernel against torch.optim.AdamW
    with one single-entry parameter per table entry, each with its own weight decay (AdamW acts
    entry by entry, so this is the same optimiser)."""
    M, C, V = 2, 6, 5
    lams = [0.05, 0.7]
    scale = torch.rand(scale_shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    W0 = torch.randn(M, C, V, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    W = W0.clone()
    opt = BatchedAdamW({"W": W}, lams, lr=0.02, decay_scale={"W": scale}, fused=True)
    steps = _row_grads(M, C, V, 20, seed=6)
    eager = W0.clone()
    eager_opt = BatchedAdamW({"W": eager}, lams, lr=0.02, decay_scale={"W": scale})
    for rg in steps:
        opt.step({"W": rg})
        eager_opt.step({"W": rg})
    assert _rel(W, eager) < 1e-12  # and the eager update to rounding
    wd = scale.expand(C, V)
    for m, lam in enumerate(lams):
        entries = [[W0[m, c, v].clone().requires_grad_(True) for v in range(V)] for c in range(C)]
        ropt = torch.optim.AdamW([{"params": [entries[c][v]], "weight_decay": lam * float(wd[c, v])}
                                  for c in range(C) for v in range(V)], lr=0.02)
        for rg in steps:
            G = rg.dense(W0)[m]
            for c in range(C):
                for v in range(V):
                    entries[c][v].grad = G[c, v].clone()
            ropt.step()
        ref = torch.stack([torch.stack([e.detach() for e in row]) for row in entries])
        assert _rel(W[m], ref) < 1e-10


@pytest.mark.slow
def test_fused_row_update_keeps_a_nonfinite_row_to_itself():
    """A diverged (inf) gradient row corrupts its own row only, as in the eager update."""
    W = torch.zeros(1, 4, 3, dtype=torch.float64)
    opt = BatchedAdamW({"W": W}, [0.1], lr=0.01, fused=True)
    opt.step({"W": RowGrad(torch.tensor([0, 2]), torch.tensor([[math.inf, 1.0, 1.0], [1.0, 2.0, 3.0]],
                                                               dtype=torch.float64))})
    assert not torch.isfinite(W[0, 0, 0]) and torch.isfinite(W[0, 1:]).all() and torch.isfinite(W[0, 0, 1:]).all()
