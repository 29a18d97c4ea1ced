"""The stacked transformer equals an independent per-model nn.Module implementation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imbalance.sim import SequenceTask, sweep
from imbalance.sim.transformer import Transformer

TASK = SequenceTask(V=12, s=1.0, predictability=0.9, lag=2, seq_len=8, n_train=256, n_heldout=64, seed=0)


def reference_logits(p, x, n_head):
    """One model, written the plain way: explicit per-head causal softmax attention."""
    B, T = x.shape
    d = p["tok_emb"].shape[1]
    dh = d // n_head
    h = p["tok_emb"][x] + p["pos_emb"][:T]
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for layer in range(p["attn_qkv"].shape[0]):
        a = F.layer_norm(h, (d,), p["ln1_w"][layer], p["ln1_b"][layer])
        q, k, v = (a @ p["attn_qkv"][layer]).split(d, -1)
        heads = []
        for i in range(n_head):
            s = slice(i * dh, (i + 1) * dh)
            att = (q[..., s] @ k[..., s].transpose(-1, -2)) / math.sqrt(dh)
            heads.append(torch.softmax(att.masked_fill(mask, float("-inf")), -1) @ v[..., s])
        h = h + torch.cat(heads, -1) @ p["attn_out"][layer]
        a = F.layer_norm(h, (d,), p["ln2_w"][layer], p["ln2_b"][layer])
        h = h + F.gelu(a @ p["mlp_in"][layer]) @ p["mlp_out"][layer]
    h = F.layer_norm(h, (d,), p["lnf_w"], p["lnf_b"])
    return h @ p.get("unembed", p["tok_emb"]).T


@pytest.mark.parametrize("tied", [False, True])
def test_stacked_equals_reference(tied):
    model = Transformer(n_layer=2, n_head=2, d_model=8, tied=tied, init_std=0.3)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    params = model.init(TASK, gens, torch.float64)
    params["ln1_b"] = params["ln1_b"] + 0.1  # non-trivial LayerNorm shift
    x = TASK.train[:5, :-1].expand(3, 5, 8)
    out = model.logits(params, x, TASK)  # (3, 5, 8, 12)
    for m in range(3):
        ref = reference_logits({k: v[m] for k, v in params.items()}, x[m], 2)
        assert torch.allclose(out[m], ref, rtol=1e-10, atol=1e-12)


def test_decayed_is_explicit_and_checked():
    assert "ln1_w" not in Transformer().decayed and "unembed" in Transformer().decayed
    assert Transformer(decayed=("tok_emb",)).decayed == ("tok_emb",)
    with pytest.raises(ValueError, match="decayed"):
        Transformer(decayed=("bias",))
    with pytest.raises(ValueError, match="d_model"):
        Transformer(d_model=10, n_head=4)


def test_transformer_sweep_learns_beyond_bigram():
    """A short run beats the unigram entropy on held-out data (the lag-2 copy is learnable)."""
    model = Transformer(n_layer=1, n_head=2, d_model=16)
    res = sweep(TASK, [0.0, 0.1], model=model, optimizer="adamw", steps=150, batch_size=32, lr=1e-2,
                seeds=(0,), dtype=torch.float32, progress=False)
    import numpy as np
    pi = TASK.token_probs
    held = np.nansum(res.heldout_loss_per_token * pi, -1)  # (2, 1) aggregate held-out loss
    unigram = -(pi * np.log(pi)).sum()
    assert res.heldout_loss_per_token.shape == (2, 1, 12)
    assert (held < unigram - 0.2).all(), (held, unigram, TASK.bayes_loss)


def test_heldout_loss_with_logit_bias_matches_reference():
    """sequence_loss_per_token with a post-hoc logit bias (T6c) against the plain per-model
    reference: per-token mean of −log softmax(z − τ log π) over the held-out targets."""
    from imbalance.sim.evaluate import sequence_loss_per_token

    model = Transformer(n_layer=1, n_head=2, d_model=8, init_std=0.3)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    params = model.init(TASK, gens, torch.float64)
    bias = -0.7 * torch.log(torch.as_tensor(TASK.token_probs, dtype=torch.float64))
    got = sequence_loss_per_token(model, params, TASK, TASK.heldout, batch=16, logit_bias=bias)
    x, y = TASK.heldout[:, :-1], TASK.heldout[:, 1:]
    for m in range(2):
        lp = torch.log_softmax(reference_logits({k: v[m] for k, v in params.items()}, x, 2) + bias, -1)
        nll = -lp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        tot = torch.zeros(TASK.V, dtype=torch.float64).index_add_(0, y.reshape(-1), nll.reshape(-1))
        cnt = torch.bincount(y.reshape(-1), minlength=TASK.V).double()
        ref = torch.where(cnt > 0, tot / cnt, torch.full_like(tot, float("nan")))
        assert torch.allclose(got[m], ref, rtol=1e-12, equal_nan=True)
    with pytest.raises(ValueError, match="logit_bias"):
        sequence_loss_per_token(model, params, TASK, TASK.heldout, logit_bias=torch.zeros(3))


def test_sequence_calibration_matches_reference():
    """ECE and average predicted distribution against the per-model reference computed directly."""
    from imbalance import metrics
    from imbalance.sim.evaluate import sequence_calibration

    model = Transformer(n_layer=1, n_head=2, d_model=8, init_std=0.5)
    params = model.init(TASK, [torch.Generator().manual_seed(3)], torch.float64)
    bias = -torch.log(torch.as_tensor(TASK.token_probs, dtype=torch.float64))
    for lb in (None, bias):
        got = sequence_calibration(model, params, TASK, TASK.heldout, batch=16, logit_bias=lb, n_bins=10)
        x, y = TASK.heldout[:, :-1], TASK.heldout[:, 1:]
        z = reference_logits({k: v[0] for k, v in params.items()}, x, 2)
        p = torch.softmax(z if lb is None else z + lb, -1).reshape(-1, TASK.V)
        conf, arg = p.max(-1)
        ece = metrics.expected_calibration_error(conf.numpy(), (arg == y.reshape(-1)).double().numpy(), 10)
        assert np.isclose(got["ece"][0], ece, rtol=1e-12)
        assert np.allclose(got["marginal"][0], p.mean(0).numpy(), rtol=1e-12)
        emp = np.bincount(y.reshape(-1).numpy(), minlength=TASK.V) / y.numel()
        assert np.isclose(got["marginal_error"][0], 0.5 * np.abs(p.mean(0).numpy() - emp).sum(), rtol=1e-12)
