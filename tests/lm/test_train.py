"""Per-token loss accumulation against a direct computation; decay groups; resume."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imbalance.lm.losses import loss_summary, per_token_loss_sums
from imbalance.lm.model import GPTConfig, build_gpt, decay_table, param_groups
from imbalance.lm.train import TrainConfig, train_run
from imbalance.zipf import frequency_buckets


def test_per_token_sums_match_direct_loop(split):
    """index_add_ accumulation over batches equals, token id by token id, the mean of the
    cross-entropies computed one window at a time with an explicit loop over positions
    (float32 forward, float64 sums: agreement to float32 rounding of each term)."""
    model = build_gpt(GPTConfig(512, layers=2, width=64, heads=4, context=32), seed=3)
    w = split.windows("heldout", 2000)  # (n, 33)
    sums, counts = per_token_loss_sums(model, w, 512, batch_size=7)
    ref_sum, ref_cnt = np.zeros(512), np.zeros(512, dtype=np.int64)
    model.eval()
    with torch.no_grad():
        for row in w:
            logp = F.log_softmax(model(input_ids=row[None, :-1]).logits[0].double(), -1)  # (T, V)
            for t, target in enumerate(row[1:].tolist()):
                ref_sum[target] -= logp[t, target].item()
                ref_cnt[target] += 1
    np.testing.assert_array_equal(counts, ref_cnt)
    np.testing.assert_allclose(sums, ref_sum, rtol=1e-5, atol=1e-5)
    s = loss_summary(sums, counts, split.token_probs)
    ids = frequency_buckets(split.token_probs)
    b0 = (ids == 0) & (ref_cnt > 0)
    assert s["bucket_loss"][0] == pytest.approx(ref_sum[b0].sum() / ref_cnt[b0].sum(), rel=1e-5)
    assert s["aggregate"] == pytest.approx(ref_sum.sum() / ref_cnt.sum(), rel=1e-5)
    typ = (ids >= 0) & (ref_cnt > 0)
    assert s["token_balanced"] == pytest.approx(np.mean(ref_sum[typ] / ref_cnt[typ]), rel=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_decay_groups(tied):
    """Norms and biases never decayed; embedding/unembedding as asked; every tensor in one group."""
    model = build_gpt(GPTConfig(512, tied=tied))
    table = decay_table(model, decay_embedding=True, decay_unembedding=False)
    roles = {r["name"]: r for r in table}
    assert all(not r["decayed"] for r in table if r["role"] in ("norm", "bias"))
    assert roles["transformer.h.0.attn.c_attn.weight"]["decayed"]
    assert roles["transformer.wpe.weight"]["decayed"]
    if tied:
        assert roles["transformer.wte.weight"]["role"] == "embedding+unembedding (tied)"
        assert not roles["transformer.wte.weight"]["decayed"]
    else:
        assert roles["transformer.wte.weight"]["decayed"] and not roles["lm_head.weight"]["decayed"]
    groups = param_groups(model, 0.1, decay_embedding=True, decay_unembedding=False)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    assert sum(p.numel() for p in groups[0]["params"]) == sum(r["numel"] for r in table if r["decayed"])


def test_resume_gives_identical_results(split, tmp_path):
    """A run stopped after its step-10 checkpoint and restarted ends with exactly the per-token
    losses and learning curve of an uninterrupted run (same seed); a third call reads it back."""
    cfg = TrainConfig(layers=2, width=64, heads=4, context=32, steps=20, batch_size=8, eval_every=10,
                      eval_tokens=1024, final_eval_tokens=4096, warmup=5)
    full = train_run(split, 0.1, 0, cfg, out=tmp_path / "full", device="cpu", progress=False)
    assert train_run(split, 0.1, 0, cfg, out=tmp_path / "cut", device="cpu", progress=False, stop_after=10) is None
    resumed = train_run(split, 0.1, 0, cfg, out=tmp_path / "cut", device="cpu", progress=False)
    for name in ("heldout_sums", "train_sums", "heldout_counts"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(full, name))
    assert resumed.curve == full.curve and [r["step"] for r in full.curve] == [0, 10, 20]
    back = train_run(split, 0.1, 0, cfg, out=tmp_path / "cut", device="cpu", progress=False)
    np.testing.assert_array_equal(back.heldout_sums, full.heldout_sums)
    with pytest.raises(ValueError, match="different sweep"):
        train_run(split, 0.3, 0, cfg, out=tmp_path / "cut", device="cpu", progress=False)


def test_grad_accum_is_the_same_step(split):
    """Four micro-batches of 2 windows give the update of one batch of 8 (the same sampled
    windows): after 5 steps the held-out per-token sums agree to float32 summation-order error
    amplified by Adam's normalisation over a few steps (rtol 1e-4)."""
    base = {"layers": 2, "width": 64, "heads": 4, "context": 32, "steps": 5, "batch_size": 8, "eval_every": 5,
            "eval_tokens": 256, "final_eval_tokens": 2048, "warmup": 2}
    one = train_run(split, 0.1, 0, TrainConfig(**base), device="cpu", progress=False)
    four = train_run(split, 0.1, 0, TrainConfig(**base, grad_accum=4), device="cpu", progress=False)
    np.testing.assert_allclose(four.heldout_sums, one.heldout_sums, rtol=1e-4, atol=1e-6)
    assert not np.array_equal(one.heldout_sums, train_run(split, 0.1, 1, TrainConfig(**base), device="cpu",
                                                          progress=False).heldout_sums)
    with pytest.raises(ValueError, match="multiple of grad_accum"):
        TrainConfig(**{**base, "batch_size": 6}, grad_accum=4)
