"""Paradox sweep plumbing on a CPU-sized problem (the physics is in the report, not asserted here)."""

import numpy as np
import pytest
import scipy.stats
import torch

from imbalance.sim import SequenceTask
from imbalance.sim.paradox import paradox_sweep, tokens_per_batch_sweep
from imbalance.sim.transformer import Transformer
from imbalance.zipf import frequency_buckets

TASK = SequenceTask(V=24, s=1.1, predictability=0.8, lag=2, seq_len=8, n_train=256, n_heldout=128, seed=0)
MODEL = Transformer(n_layer=1, n_head=2, d_model=16)


@pytest.mark.parametrize("mitigation", [None, "reweight", "row_decay"])
def test_paradox_summary_matches_raw_result(mitigation):
    p = paradox_sweep(TASK, (0.0, 0.5), model=MODEL, steps=40, batch_size=16, lr=1e-2, seeds=(0, 1, 2),
                      dtype=torch.float32, mitigation=mitigation, progress=False)
    held = p.sweep.heldout_loss_per_token  # (2, 3, V)
    pi = TASK.token_probs
    assert held.shape == (2, 3, 24) and not np.isnan(held).any()
    agg = (held * pi).sum(-1)  # (2, 3) recomputed by hand
    assert np.allclose(p.aggregate, agg.mean(1))
    half = scipy.stats.t.ppf(0.975, 2) * agg.std(1, ddof=1) / np.sqrt(3)
    assert np.allclose(p.aggregate_ci, half)
    ids = frequency_buckets(pi)
    tail = ids.max()
    sel = ids == tail
    tail_loss = (held[..., sel] * pi[sel]).sum(-1) / pi[sel].sum()
    assert np.allclose(p.bucket_loss[:, -1], tail_loss.mean(1))
    assert np.allclose(p.token_balanced, held.mean(-1).mean(1))
    assert p.tokens_per_batch == 16 * 8 and 0 <= p.below_line <= 1


def test_row_decay_changes_training_and_bad_mitigation():
    a = paradox_sweep(TASK, (0.5,), model=MODEL, steps=20, batch_size=16, lr=1e-2, seeds=(0, 1),
                      dtype=torch.float32, progress=False)
    b = paradox_sweep(TASK, (0.5,), model=MODEL, steps=20, batch_size=16, lr=1e-2, seeds=(0, 1),
                      dtype=torch.float32, mitigation="row_decay", progress=False)
    assert not np.allclose(a.sweep.params["unembed"], b.sweep.params["unembed"])
    with pytest.raises(ValueError, match="mitigation"):
        paradox_sweep(TASK, (0.5,), model=MODEL, steps=2, batch_size=4, lr=1e-2, mitigation="magic")


def test_tokens_per_batch_sweep_keeps_the_token_budget():
    out = tokens_per_batch_sweep(TASK, 0.5, [8, 32], model=MODEL, token_budget=8 * 8 * 40, lr=1e-2,
                                 seeds=(0, 1), dtype=torch.float32, progress=False)
    assert [o.sweep.train_loss.shape[0] for o in out] == [40, 10]
    assert [o.tokens_per_batch for o in out] == [64, 256]


def test_posthoc_adjustment_and_calibration_of_trained_models():
    """posthoc_adjusted re-evaluates the trained models with logits z − τ log π (checked against a
    direct per-model log-softmax of the model's logits); τ = 0 reproduces the sweep's own losses."""
    from imbalance.sim.paradox import paradox_calibration, posthoc_adjusted, posthoc_bias

    p = paradox_sweep(TASK, (0.0, 0.5), model=MODEL, steps=40, batch_size=16, lr=1e-2, seeds=(0, 1),
                      dtype=torch.float64, progress=False)
    same = posthoc_adjusted(p, MODEL, TASK, 0.0)
    assert np.allclose(same.aggregate, p.aggregate, rtol=1e-12) and np.allclose(same.gap, p.gap, rtol=1e-12)
    adj = posthoc_adjusted(p, MODEL, TASK, 1.0)
    pi = TASK.token_probs
    x, y = TASK.heldout[:, :-1], TASK.heldout[:, 1:]
    for i in range(2):
        for s in range(2):
            params = {k: v[i, s].unsqueeze(0) for k, v in p.sweep.params.items()}
            z = MODEL.logits(params, x.unsqueeze(0), TASK)[0] - torch.log(torch.as_tensor(pi))  # (n, T, V)
            nll = -torch.log_softmax(z, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
            tot = np.bincount(y.reshape(-1).numpy(), weights=nll.reshape(-1).numpy(), minlength=24)
            lpt = tot / np.bincount(y.reshape(-1).numpy(), minlength=24)
            assert np.allclose(adj.sweep.heldout_loss_per_token[i, s], lpt, rtol=1e-10)
    assert np.all(adj.gap < p.gap)  # the adjustment raises rare tokens' probabilities
    cal = paradox_calibration(p, MODEL, TASK)
    assert cal["ece"].shape == (2,) and np.all((cal["ece"] >= 0) & (cal["ece"] <= 1))
    assert np.all(cal["marginal_error"] < paradox_calibration(p, MODEL, TASK, tau=1.0)["marginal_error"])
    with pytest.raises(ValueError, match="tau"):
        posthoc_bias(pi, -1.0)
    assert np.isfinite(posthoc_bias(np.array([0.5, 0.0, 0.5]), 1.0)).all()
