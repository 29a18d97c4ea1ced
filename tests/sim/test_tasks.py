import collections

import numpy as np
import pytest
import scipy.stats
import torch

from imbalance.sim import BigramTask, FeatureTask, SequenceTask, TokenStreamTask
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


def test_token_stream_task_splits_contiguously_and_samples_training_windows():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 30, 1003)
    ids[900:] = 29  # the held-out end differs visibly from the training part
    task = TokenStreamTask(ids, 30, seq_len=9, heldout_fraction=0.1)
    n_held = round(0.1 * 1003)
    n_train = 1003 - n_held
    assert task.kind == "sequence" and task.V == task.vocab_size == 30 and task.seq_len == 9
    # evaluation windows: the non-overlapping 10-token windows of each split, in order
    assert np.array_equal(task.train.numpy(), ids[: n_train // 10 * 10].reshape(-1, 10))
    assert np.array_equal(task.heldout.numpy(), ids[n_train:][: n_held // 10 * 10].reshape(-1, 10))
    assert task.n_train == n_train // 10 and task.n_heldout == n_held // 10
    assert np.array_equal(task.token_probs, np.bincount(ids[:n_train], minlength=30) / n_train)
    # sampled windows are contiguous pieces of the training split only (no held-out token)
    x, y = task.sample(torch.Generator().manual_seed(0), 2000)
    assert x.shape == y.shape == (2000, 9) and torch.equal(x[:, 1:], y[:, :-1])
    train_windows = {tuple(ids[i:i + 10]) for i in range(n_train - 9)}
    rows = torch.cat([x, y[:, -1:]], 1).numpy()
    assert all(tuple(r) in train_windows for r in rows)
    starts = {int(np.flatnonzero((np.lib.stride_tricks.sliding_window_view(ids[:n_train], 10) == r).all(1))[0])
              for r in rows[:300]}
    assert len(starts) > 200  # random offsets, not a fixed set of rows


def test_token_stream_task_is_deterministic():
    ids = np.arange(200) % 7
    a, b = TokenStreamTask(ids, 7, seq_len=4), TokenStreamTask(ids.tolist(), 7, seq_len=4)
    assert torch.equal(a.train, b.train) and torch.equal(a.heldout, b.heldout)
    xa, _ = a.sample(torch.Generator().manual_seed(5), 64)
    xb, _ = b.sample(torch.Generator().manual_seed(5), 64)
    assert torch.equal(xa, xb)


@pytest.mark.parametrize("kw, name", [
    (dict(ids=np.ones((10, 10), dtype=int)), "ids"),
    (dict(ids=np.linspace(0, 1, 100)), "ids"),
    (dict(ids=np.r_[np.zeros(99, int), 9]), "ids"),
    (dict(ids=np.r_[np.zeros(99, int), -1]), "ids"),
    (dict(vocab_size=1), "vocab_size"),
    (dict(seq_len=0), "seq_len"),
    (dict(heldout_fraction=0.0), "heldout_fraction"),
    (dict(heldout_fraction=float("nan")), "heldout_fraction"),
    (dict(heldout_fraction=0.02), "heldout_fraction"),  # 2 held-out tokens: not one window
    (dict(ids=np.zeros(12, int)), "ids"),
])
def test_token_stream_task_bad_input(kw, name):
    args = dict(ids=np.zeros(100, int), vocab_size=9, seq_len=4, heldout_fraction=0.2)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
        TokenStreamTask(**args)
