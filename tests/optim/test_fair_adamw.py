"""FairAdamW against torch.optim.AdamW (the independent reference) and against literal per-row loops.

Every comparison is float64; the tolerance 1e-12 is ~1e4 ulp of weights of order 1 after 100 steps
(different but equivalent operation orders round differently).
"""

import io

import numpy as np
import pytest
import torch

from imbalance.optim import FairAdamW, row_decay_scale

TOL = 1e-12
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _model(seed, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(20, 6, generator=gen, dtype=torch.float64)        # (V, H) embedding rows
    lin = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    bias = torch.randn(6, generator=gen, dtype=torch.float64)
    return [t.to(device).requires_grad_() for t in (emb, lin, bias)]


def _loss(params, tokens):
    emb, lin, bias = params
    h = torch.tanh(emb[tokens] @ lin + bias)                            # (n, H)
    return torch.log_softmax(h @ lin, dim=-1)[:, 0].neg().mean()    # only looked-up rows of emb get gradient


def _tokens(gen, step, V=20, n=5, device="cpu"):
    """A batch of n tokens; in even steps only rows < 10, so some rows have no gradient."""
    hi = V if step % 2 else V // 2
    return torch.randint(0, hi, (n,), generator=gen).to(device)


def _train(opt_fn, params, steps=100, seed=0, device="cpu"):
    opt = opt_fn(params)
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        opt.zero_grad()
        _loss(params, _tokens(gen, t, device=device)).backward()
        opt.step()
    return opt


def _groups(params, **extra):
    emb, lin, bias = params
    return [{"params": [emb, lin], "weight_decay": 0.3, **extra},
            {"params": [bias], "weight_decay": 0.0, "lr": 3e-2, "betas": (0.8, 0.99), "eps": 1e-6}]


def _assert_close(a, b, tol=TOL):
    for x, y in zip(a, b):
        assert torch.allclose(x, y, rtol=0, atol=tol), (x - y).abs().max().item()


@pytest.mark.parametrize("device", DEVICES)
def test_options_off_equal_torch_adamw_mixed_groups(device):
    """100 steps, two groups with different lr, betas, eps and weight decay: same as torch.optim.AdamW."""
    ref, ours = _model(1, device), _model(1, device)
    ref_opt = _train(lambda p: torch.optim.AdamW(_groups(p), lr=1e-2, foreach=False), ref, device=device)
    our_opt = _train(lambda p: FairAdamW(_groups(p), lr=1e-2), ours, device=device)
    _assert_close(ref, ours)
    for p, q in zip(ref, ours):
        for key in ("exp_avg", "exp_avg_sq"):
            _assert_close([ref_opt.state[p][key]], [our_opt.state[q][key]])
        assert float(ref_opt.state[p]["step"]) == float(our_opt.state[q]["step"]) == 100


def _per_row_reference(params, wd_rows_fn, steps=100, seed=0):
    """torch.optim.AdamW with every embedding row its own parameter (own weight decay), the rest as usual."""
    emb, lin, bias = params
    rows = [emb[i].detach().clone().requires_grad_() for i in range(emb.shape[0])]
    groups = [{"params": [r], "weight_decay": 0.0} for r in rows]
    groups += [{"params": [lin], "weight_decay": 0.3},
               {"params": [bias], "weight_decay": 0.0, "lr": 3e-2, "betas": (0.8, 0.99), "eps": 1e-6}]
    opt = torch.optim.AdamW(groups, lr=1e-2, foreach=False)
    gen = torch.Generator().manual_seed(seed)
    for t in range(steps):
        opt.zero_grad()
        _loss([torch.stack(rows), lin, bias], _tokens(gen, t)).backward()
        seen = [bool(r.grad.ne(0).any()) for r in rows]
        for i, g in enumerate(groups[:len(rows)]):
            g["weight_decay"] = wd_rows_fn(i, seen[i])
        opt.step()
    return [torch.stack(rows).detach(), lin, bias]


def test_row_decay_scale_equals_one_adamw_per_row():
    """Row-scaled decay = torch.optim.AdamW with each row a parameter whose weight decay is λ c_x."""
    scale = torch.linspace(0.0, 2.0, 20, dtype=torch.float64)
    ours = _model(2)
    _train(lambda p: FairAdamW([
        {"params": [p[0]], "weight_decay": 0.3, "row_decay_scale": scale},
        {"params": [p[1]], "weight_decay": 0.3},
        {"params": [p[2]], "weight_decay": 0.0, "lr": 3e-2, "betas": (0.8, 0.99), "eps": 1e-6}], lr=1e-2), ours)
    ref = _per_row_reference(_model(2), lambda i, seen: 0.3 * float(scale[i]))
    _assert_close(ref, ours)


def test_lazy_decay_equals_adamw_with_decay_switched_per_row():
    """lazy="decay": decay λ only in steps where the row has gradient, moments dense (torch AdamW per row)."""
    ours = _model(3)
    _train(lambda p: FairAdamW([
        {"params": [p[0]], "weight_decay": 0.3, "lazy": "decay"},
        {"params": [p[1]], "weight_decay": 0.3},
        {"params": [p[2]], "weight_decay": 0.0, "lr": 3e-2, "betas": (0.8, 0.99), "eps": 1e-6}], lr=1e-2), ours)
    ref = _per_row_reference(_model(3), lambda i, seen: 0.3 if seen else 0.0)
    _assert_close(ref, ours)


def _literal_rows(W0, grads, *, lr, wd, b1, b2, eps, scale, lazy, coupled):
    """A row-by-row, element-by-element numpy reading of the update rules (no vectorisation)."""
    W = W0.copy()
    R, H = W.shape
    m, v = np.zeros_like(W), np.zeros_like(W)
    for t, G in enumerate(grads, start=1):
        seen = [bool(np.any(G[i] != 0)) for i in range(R)]
        for i in range(R):
            active = seen[i] or lazy == "none"
            if active or lazy == "decay":
                W[i] *= 1 - lr * wd * scale[i] * (1.0 if active else 0.0)
            if seen[i] or lazy != "moments":
                m[i] = b1 * m[i] + (1 - b1) * G[i]
                v[i] = b2 * v[i] + (1 - b2) * G[i] ** 2
        vbar = np.array([[v[:, j].mean() for j in range(H)]] * R) if coupled else v
        for i in range(R):
            if lazy == "moments" and not seen[i]:
                continue
            for j in range(H):
                W[i, j] -= lr / (1 - b1 ** t) * m[i, j] / (np.sqrt(vbar[i, j] / (1 - b2 ** t)) + eps)
    return W


@pytest.mark.parametrize("lazy,coupled", [("moments", False), ("moments", True), ("none", True), ("decay", True)])
def test_lazy_moments_and_coupled_equal_literal_loops(lazy, coupled):
    """LazyAdam-style and shared-second-moment updates against the literal row loop, 100 steps."""
    gen = torch.Generator().manual_seed(4)
    R, H = 12, 5
    W0 = torch.randn(R, H, generator=gen, dtype=torch.float64)
    grads = []
    for _t in range(100):
        G = torch.randn(R, H, generator=gen, dtype=torch.float64)
        G[torch.rand(R, generator=gen) < 0.6] = 0.0                         # rows absent from the batch
        grads.append(G)
    scale = torch.rand(R, generator=gen, dtype=torch.float64) * 2
    W = W0.clone().requires_grad_()
    opt = FairAdamW([W], lr=1e-2, weight_decay=0.2, eps=1e-8, row_decay_scale=scale, lazy=lazy, coupled=coupled)
    for G in grads:
        W.grad = G.clone()
        opt.step()
    ref = _literal_rows(W0.numpy(), [g.numpy() for g in grads], lr=1e-2, wd=0.2, b1=0.9, b2=0.999, eps=1e-8,
                        scale=scale.numpy(), lazy=lazy, coupled=coupled)
    assert np.abs(W.detach().numpy() - ref).max() < TOL


def test_coupled_with_identical_rows_is_adamw():
    """When every row has the same gradient, the mean over rows of v is each row's v: torch AdamW."""
    gen = torch.Generator().manual_seed(5)
    a = torch.randn(8, 4, generator=gen, dtype=torch.float64).requires_grad_()
    b = a.detach().clone().requires_grad_()
    oa, ob = FairAdamW([a], lr=1e-2, coupled=True), torch.optim.AdamW([b], lr=1e-2, foreach=False)
    for _ in range(100):
        g = torch.randn(1, 4, generator=gen, dtype=torch.float64).expand(8, 4)
        a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    _assert_close([a], [b])


@pytest.mark.parametrize("extra", [{}, {"lazy": "decay"}, {"lazy": "moments"}, {"coupled": True},
                                   {"row_decay_scale": np.linspace(0.1, 1, 20)}])
def test_state_dict_round_trip_weights_only(extra):
    """50 steps, torch.save, torch.load(weights_only=True) into a fresh optimizer, 50 more: same as 100."""
    straight = _model(6)
    _train(lambda p: FairAdamW([{"params": [p[0]], **extra}, {"params": p[1:]}], lr=1e-2), straight)
    resumed = _model(6)
    opt = FairAdamW([{"params": [resumed[0]], **extra}, {"params": resumed[1:]}], lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for t in range(100):
        if t == 50:
            buf = io.BytesIO()
            torch.save(opt.state_dict(), buf)
            buf.seek(0)
            opt = FairAdamW([{"params": [resumed[0]]}, {"params": resumed[1:]}], lr=1e-2)
            opt.load_state_dict(torch.load(buf, weights_only=True))
        opt.zero_grad()
        _loss(resumed, _tokens(gen, t)).backward()
        opt.step()
    _assert_close(straight, resumed, tol=0.0)


def test_loads_a_torch_adamw_state_dict():
    """AdamW's state keys: a state_dict saved by torch.optim.AdamW continues in FairAdamW."""
    a, b = _model(7), _model(7)
    oa = _train(lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=False), a, steps=30)
    ob = _train(lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=False), b, steps=30)
    ours = FairAdamW(b, lr=1e-2)
    ours.load_state_dict(ob.state_dict())
    gen = torch.Generator().manual_seed(9)
    for opt, params in ((oa, a), (ours, b)):
        g = torch.Generator().manual_seed(9)
        for t in range(20):
            opt.zero_grad()
            _loss(params, _tokens(g, t)).backward()
            opt.step()
    del gen
    _assert_close(a, b)


@pytest.mark.parametrize("kwargs,name", [
    ({"lr": -1.0}, "lr"), ({"lr": float("nan")}, "lr"), ({"eps": -1e-8}, "eps"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"betas": (1.0, 0.9)}, "betas[0]"), ({"betas": (0.9, -0.1)}, "betas[1]"),
    ({"betas": "x"}, "betas"), ({"lazy": "rows"}, "lazy"), ({"coupled": "yes"}, "coupled"),
    ({"row_decay_scale": np.ones(3)}, "row_decay_scale"), ({"row_decay_scale": -np.ones(20)}, "row_decay_scale"),
    ({"row_decay_scale": np.full(20, np.nan)}, "row_decay_scale"), ({"row_decay_scale": np.ones((20, 1))},
                                                                       "row_decay_scale"),
])
def test_bad_input_raises_value_error_naming_it(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        FairAdamW([torch.zeros(20, 3, requires_grad=True)], **kwargs)


def test_bad_group_option_and_sparse_gradient():
    p = torch.zeros(20, 3, requires_grad=True)
    with pytest.raises(ValueError, match="lazy"):
        FairAdamW([{"params": [p], "lazy": 3}])
    emb = torch.nn.Embedding(20, 3, sparse=True)
    opt = FairAdamW(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        opt.step()


def test_row_decay_scale_helper_formulas():
    """ρ(Bπ) = √(Bπ/(1 + (B−1)π)) (T3) written out here; L2: ∝ π; rows never seen get no decay."""
    counts = np.array([50.0, 30, 15, 5, 0])
    pi = counts / counts.sum()
    B = 8
    rho = np.sqrt(B * pi / (1 + (B - 1) * pi))
    np.testing.assert_allclose(row_decay_scale(counts, batch_size=B), rho / rho.max(), rtol=1e-14)
    np.testing.assert_allclose(row_decay_scale(counts, optimizer="sgd", normalize="mean"),
                               pi / pi[:4].mean(), rtol=1e-14)
    a = 1 - (1 - pi) ** B
    lazy = row_decay_scale(counts, batch_size=B, lazy="decay")
    ratio = rho[:4] / a[:4]
    np.testing.assert_allclose(lazy[:4], ratio / ratio.max(), rtol=1e-12)
    assert lazy[4] == 0
    with pytest.raises(ValueError, match="batch_size"):
        row_decay_scale(counts)
    with pytest.raises(ValueError, match="counts"):
        row_decay_scale(-counts, batch_size=B)
