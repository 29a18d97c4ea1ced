import collections

import numpy as np
import pytest
import scipy.stats
import torch

from imbalance.sim import BigramTask, FeatureTask, SequenceTask
from imbalance.zipf import zipf_pmf


def test_deterministic_zipf_law_and_exact_loss():
    task = BigramTask.deterministic_zipf(6, 1.2, r=2.0)
    assert np.allclose(task.token_probs, zipf_pmf(6, 1.2)) and np.allclose(task.context_probs, zipf_pmf(6, 1.2))
    W = torch.randn(1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lpt = task.loss_per_token(torch.log_softmax(task.r * W, -1))[0]
    ref = [-(2.0 * W[0, k, k] - torch.logsumexp(2.0 * W[0, k], 0)) for k in range(6)]
    assert torch.allclose(lpt, torch.stack(ref), rtol=1e-13)
    assert task.bayes_loss == 0.0


def test_stochastic_zipf_marginal_and_bayes_loss():
    V, s, a = 20, 1.1, 0.7
    task = BigramTask.stochastic_zipf(V, s, a)
    pi = zipf_pmf(V, s)
    assert np.allclose(task.token_probs, pi, rtol=1e-12)
    q = task.joint / task.joint.sum(1, keepdims=True)
    assert np.isclose(task.bayes_loss, (pi * scipy.stats.entropy(q, axis=1)).sum(), rtol=1e-12)
    assert np.isclose(BigramTask.stochastic_zipf(V, s, 0.0).bayes_loss, scipy.stats.entropy(pi), rtol=1e-12)
    assert BigramTask.stochastic_zipf(V, s, 1.0).bayes_loss == pytest.approx(0.0, abs=1e-15)
    n = 200_000
    sampled = BigramTask.stochastic_zipf(V, s, a, n_tokens=n, seed=1)
    z = (sampled.token_probs - pi) / np.sqrt(pi * (1 - pi) / n)
    assert np.abs(z).max() < 5  # within sampling error


def test_from_tokens_counts_pairs():
    ids = np.array([0, 1, 1, 2, 0, 1, 3, 3])
    task = BigramTask.from_tokens(ids, 5)
    ref = collections.Counter(zip(ids[:-1], ids[1:]))
    dense = task.counts.toarray()
    assert dense.shape == (5, 5)
    assert all(dense[i, j] == c for (i, j), c in ref.items()) and dense.sum() == len(ids) - 1
    with pytest.raises(ValueError, match="ids"):
        BigramTask.from_tokens([0, 7], 5)
    with pytest.raises(ValueError, match="vocab_size"):
        BigramTask.from_tokens([0, 1], 1)


def test_sampling_follows_joint_law():
    task = BigramTask.stochastic_zipf(6, 1.0, 0.5)
    ctx, tgt = task.sample(torch.Generator().manual_seed(0), 100_000)
    obs = np.bincount((ctx * 6 + tgt).numpy(), minlength=36)
    exp = task.joint.ravel() * obs.sum()
    assert scipy.stats.chisquare(obs, exp).pvalue > 1e-3


def test_feature_task_bound_and_frequencies():
    task = FeatureTask(K=5, dim=4, s=1.5, n=500, sigma=2.0, R=1.5)
    assert (task.features.norm(dim=1) <= 1.5 + 1e-12).all()
    assert np.abs(task.token_probs - zipf_pmf(5, 1.5)).max() < 2 / 500


def test_sequence_task_marginal_and_bayes_loss():
    task = SequenceTask(V=16, s=1.0, predictability=0.6, lag=3, seq_len=24, n_train=400, n_heldout=400, seed=2)
    pi = zipf_pmf(16, 1.0)
    x = task.heldout.numpy()
    n = x.size
    z = (np.bincount(x.ravel(), minlength=16) / n - pi) / np.sqrt(pi * (1 - pi) / n)
    assert np.abs(z).max() < 5
    # Bayes predictor's held-out CE ≈ the stated entropy rate, within 4 standard errors
    prev, nxt = x[:, :-3].ravel(), x[:, 3:].ravel()
    p = (1 - 0.6) * pi[nxt] + 0.6 * (prev == nxt)
    ce = -np.log(p)
    assert abs(ce.mean() - task.bayes_loss) < 4 * ce.std() / np.sqrt(ce.size)
    assert not np.array_equal(task.train[:5], task.heldout[:5])


def test_bad_task_input():
    with pytest.raises(ValueError, match="predictability"):
        BigramTask.stochastic_zipf(5, 1.0, 1.5)
    with pytest.raises(ValueError, match="counts"):
        BigramTask(-np.ones((2, 2)))
    with pytest.raises(ValueError, match="r"):
        BigramTask.deterministic_zipf(4, 1.0, r=0)
    with pytest.raises(ValueError, match="seq_len"):
        SequenceTask(V=8, lag=4, seq_len=3)
    with pytest.raises(ValueError, match="sigma"):
        FeatureTask(K=3, dim=2, sigma=-1)
