"""The two mitigations of the real-LM pipeline: 1/π loss reweighting in training
(``TrainConfig.loss_weighting``) and post-hoc logit adjustment at evaluation (``logit_bias``), each
against a computation by hand in float64."""

import argparse
import json
import math

import numpy as np
import pytest
import torch

from imbalance import metrics
from imbalance.lm.losses import per_token_loss_sums, token_cross_entropy
from imbalance.lm.model import GPTConfig, build_gpt, param_groups
from imbalance.lm.train import TrainConfig, config_dict, loss_weights, lr_at, run_fingerprint, train_run
from imbalance.optim.real_text import window_ece
from imbalance.sim.paradox import posthoc_bias

V = 512


def _by_hand_ce(z, y) -> list[float]:
    """−log softmax(z)_y per position with math.fsum (float64), z (N, V) and y (N,) as lists."""
    return [math.log(math.fsum(math.exp(a - max(row)) for a in row)) + max(row) - row[t] for row, t in zip(z, y)]


def test_inverse_frequency_weights_by_hand(split):
    """w_v = 1/(n π_v) over the n types with π_v > 0, 0 elsewhere; so Σ_v π_v w_v = 1 (a target drawn from
    π has unit expected weight: the reweighted loss is on the scale of the plain one)."""
    pi = split.token_probs
    w = loss_weights(TrainConfig(loss_weighting="inverse-frequency"), pi).double().numpy()
    seen = pi > 0
    n = int(seen.sum())
    assert 0 < n < V  # the fixture has unseen types, so both branches are exercised
    np.testing.assert_allclose(w[seen], [1.0 / (n * p) for p in pi[seen]], rtol=1e-6)
    assert (w[~seen] == 0).all()
    assert math.fsum(pi * w) == pytest.approx(1.0, rel=1e-6)
    assert loss_weights(TrainConfig(), pi) is None


def test_weighted_loss_matches_direct_per_token_sum():
    """token_cross_entropy = (1/N) Σ_i w_{y_i} CE_i, the sum written out token by token in float64
    (float32 forward: agreement to its rounding)."""
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2, 5, 11, generator=gen)                      # (B, T, V)
    y = torch.randint(0, 11, (2, 5), generator=gen)                         # (B, T)
    w = torch.rand(11, generator=gen)                                       # (V,)
    ce = _by_hand_ce(logits.reshape(10, 11).double().tolist(), y.reshape(-1).tolist())
    weighted = math.fsum(w[t].item() * c for t, c in zip(y.reshape(-1).tolist(), ce)) / 10
    assert token_cross_entropy(logits, y, w).item() == pytest.approx(weighted, rel=1e-6)
    assert token_cross_entropy(logits, y).item() == pytest.approx(math.fsum(ce) / 10, rel=1e-6)


def test_reweighted_training_step_matches_manual_step(split, tmp_path):
    """One step of ``train_run`` with loss_weighting="inverse-frequency" equals one AdamW step written out
    here: same initialisation and batch, the loss as the per-token sum of w_y · CE, clipping, lr of step 0;
    its recorded batch loss is that sum. float32 end to end, the per-token sum in another order: agreement
    to 1e-5."""
    cfg = TrainConfig(layers=1, width=32, heads=2, context=32, steps=1, batch_size=4, warmup=1, eval_every=1,
                      eval_tokens=256, final_eval_tokens=256, loss_weighting="inverse-frequency")
    train_run(split, 0.1, 0, cfg, out=tmp_path / "run", device="cpu", save_model=True, progress=False)
    from transformers import GPT2LMHeadModel

    trained = GPT2LMHeadModel.from_pretrained(tmp_path / "run" / "model")

    model = build_gpt(cfg.gpt(split.vocab_size), 0)
    opt = torch.optim.AdamW(param_groups(model, 0.1, decay_embedding=True, decay_unembedding=True),
                            lr=lr_at(0, cfg), betas=cfg.betas, eps=cfg.eps)
    x, y = split.sample(torch.Generator().manual_seed(1_000_003 * 0 + 7), cfg.batch_size)   # (B, T)
    w = torch.as_tensor(1.0 / (np.count_nonzero(split.token_probs) * np.where(split.token_probs > 0,
                                                                             split.token_probs, np.inf)),
                        dtype=torch.float32)                                 # (V,)
    logp = torch.log_softmax(model(input_ids=x).logits, -1)                  # (B, T, V)
    loss = sum(-w[t] * logp[b, i, t] for b in range(x.shape[0]) for i, t in enumerate(y[b].tolist())) / y.numel()
    recorded = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[-1])["batch_loss"]
    assert recorded == pytest.approx(loss.item(), rel=1e-5)  # the loss's scale (Adam's first step ignores it)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    for (name, p), q in zip(model.named_parameters(), trained.parameters()):
        torch.testing.assert_close(q, p.detach(), rtol=1e-5, atol=1e-6, msg=name)


def test_loss_weighting_config_and_flag():
    with pytest.raises(ValueError, match="loss_weighting"):
        TrainConfig(loss_weighting="balanced")
    assert "loss_weighting" not in config_dict(TrainConfig())  # runs stored before the field keep their identity
    assert config_dict(TrainConfig(loss_weighting="inverse-frequency"))["loss_weighting"] == "inverse-frequency"
    from imbalance.lm.cli import add_lm_commands

    parser = argparse.ArgumentParser()
    add_lm_commands(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["lm", "train", "--loss-weighting", "inverse-frequency"]).loss_weighting == \
        "inverse-frequency"
    assert parser.parse_args(["lm", "train"]).loss_weighting == "none"


def test_fingerprint_tells_weighted_runs_apart(split):
    assert run_fingerprint(split, 0.1, 0, TrainConfig()) != run_fingerprint(
        split, 0.1, 0, TrainConfig(loss_weighting="inverse-frequency"))


def test_posthoc_adjusted_loss_and_ece_by_hand(split):
    """Per-token loss sums and top-1 ECE of a tiny model evaluated on logits z − τ log π equal the same
    quantities computed here from the raw logits in float64 (−τ log π by hand; unseen types get the rarest
    seen type's boost)."""
    model = build_gpt(GPTConfig(V, layers=1, width=32, heads=2, context=32), seed=5)
    pi, tau = split.token_probs, 0.7
    bias = posthoc_bias(pi, tau)
    rare = min(p for p in pi if p > 0)
    np.testing.assert_allclose(bias, [-tau * math.log(p if p > 0 else rare) for p in pi], rtol=1e-12)
    w = split.windows("heldout", 300)                                       # (n, T+1)
    sums, counts = per_token_loss_sums(model, w, V, batch_size=3, logit_bias=bias)
    model.eval()
    with torch.no_grad():
        z = model(input_ids=w[:, :-1]).logits.double().reshape(-1, V).numpy() + bias  # (nT, V)
    y = w[:, 1:].reshape(-1).numpy()                                        # (nT,)
    ce = np.array(_by_hand_ce(z.tolist(), y.tolist()))
    ref = np.zeros(V)
    np.add.at(ref, y, ce)
    np.testing.assert_array_equal(counts, np.bincount(y, minlength=V))
    np.testing.assert_allclose(sums, ref, rtol=1e-5, atol=1e-5)
    plain, _ = per_token_loss_sums(model, w, V, batch_size=3)
    assert not np.allclose(plain, sums, rtol=1e-3)                         # the adjustment moved the loss
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ece = metrics.expected_calibration_error(p.max(1), (p.argmax(1) == y).astype(float), 15)
    assert window_ece(model, w, batch_size=3, logit_bias=bias) == pytest.approx(ece, abs=1e-5)


def test_tail_pool_by_hand(split):
    """The tail of regime (b): the fewest rarest log3 buckets whose held-out occurrences reach min_heldout,
    counted here token by token; its loss is the occurrence-weighted mean CE over them."""
    from imbalance.optim.real_text import heldout_tail_bucket, tail_loss
    from imbalance.zipf import frequency_buckets

    ids = frequency_buckets(split.token_probs)
    held = split.heldout.tolist()
    for m in (1, 20, 200):
        k = heldout_tail_bucket(split, min_heldout=m)
        assert sum(ids[t] >= k for t in held) >= m > sum(ids[t] >= k + 1 for t in held)
    gen = np.random.default_rng(1)
    sums, counts = gen.uniform(0, 9, V), gen.integers(0, 4, V)
    k = heldout_tail_bucket(split, min_heldout=20)
    pool = [v for v in range(V) if ids[v] >= k]
    assert tail_loss(sums, counts, split.token_probs, k) == pytest.approx(
        math.fsum(sums[v] for v in pool) / sum(int(counts[v]) for v in pool), rel=1e-12)
    with pytest.raises(ValueError, match="min_heldout"):
        heldout_tail_bucket(split, min_heldout=10**9)
