"""The report's theory lines against independent computations: pair counting by hand, the
empirical conditional entropy by a loop over occurrences, the tied factored bigram optimum by
scipy L-BFGS on the raw objective, ρ from its formula per token."""

from collections import Counter

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from imbalance.lm.predictions import bigram_counts, factored_lines, t3_lines
from imbalance.zipf import frequency_buckets


def test_bigram_counts_match_pair_counter():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=500)
    C = bigram_counts(ids, 9).toarray()
    expect = np.zeros((9, 9))
    for (a, b), n in Counter(zip(ids[:-1].tolist(), ids[1:].tolist())).items():
        expect[a, b] = n
    np.testing.assert_array_equal(C, expect)
    with pytest.raises(ValueError, match="ids"):
        bigram_counts(ids[:1], 9)


def test_t3_lines_match_rho_per_token():
    pi = np.array([0.4, 0.3, 0.2, 0.05, 0.03, 0.015, 0.005, 0.0])
    B = 64
    lines = t3_lines(pi, B)
    ids = frequency_buckets(pi)
    for b in range(ids.max() + 1):
        rho = [np.sqrt(B * p / (1 + (B - 1) * p)) for p in pi[ids == b]]
        assert lines.rho[b] == pytest.approx(np.mean(rho), rel=1e-12)
        assert lines.below_one_per_batch[b] == pytest.approx(np.mean([B * p < 1 for p in pi[ids == b]]))
    assert lines.margin_ratio[0] == 1.0
    assert lines.below_one_per_batch_all == pytest.approx(np.mean([B * p < 1 for p in pi[pi > 0]]))


def _stream(V=5, n=400, seed=1):
    """A token stream whose successor law is a random sparse-ish Markov chain."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(V, 0.4), size=V)  # (V, V)
    ids = [0]
    for _ in range(n - 1):
        ids.append(int(rng.choice(V, p=P[ids[-1]])))
    return np.array(ids)


def test_factored_lines_at_zero_is_the_empirical_conditional_entropy():
    ids, V = _stream(), 5
    C = bigram_counts(ids, V)
    pi = np.bincount(ids, minlength=V) / ids.size
    lines = factored_lines(C, pi, [0.0])
    # by hand: −log q(next | prev) per occurrence, averaged per target bucket
    q = C.toarray() / C.toarray().sum(1, keepdims=True)
    nll = -np.log(q[ids[:-1], ids[1:]])  # (n−1,)
    b = frequency_buckets(pi)[ids[1:]]
    for j in range(lines.bucket_loss.shape[1]):
        assert lines.bucket_loss[0, j] == pytest.approx(nll[b == j].mean(), rel=1e-12)
    assert lines.aggregate[0] == pytest.approx(nll.mean(), rel=1e-12)
    assert lines.collapse_frequency[0] == 0 and lines.below_collapse[0] == 0


def _tied_factored_by_lbfgs(C, lam):
    """min over E (V×V) of Σ_x P(x) CE(q_x, E E_xᵀ) + (λ/2)‖E‖², from several random starts."""
    M = torch.tensor(C / C.sum())  # (V, V) joint law
    V = C.shape[0]

    def f(e):
        E = torch.tensor(e.reshape(V, V), requires_grad=True)
        Z = E @ E.T  # (V, V) logits, row = context
        obj = -(M * torch.log_softmax(Z, dim=1)).sum() + lam / 2 * (E * E).sum()
        obj.backward()
        return obj.item(), E.grad.numpy().ravel()

    best = None
    for s in range(4):
        r = minimize(f, np.random.default_rng(s).normal(0, 1, V * V), jac=True, method="L-BFGS-B",
                     options={"maxiter": 5000, "gtol": 1e-11, "ftol": 1e-15})
        best = r if best is None or r.fun < best.fun else best
    E = best.x.reshape(V, V)
    logp = torch.log_softmax(torch.tensor(E @ E.T), dim=1).numpy()  # (V, V)
    return -(C * logp).sum(0)  # (V,) loss sums per target


@pytest.mark.parametrize("lam", [0.02, 0.2])
def test_factored_lines_match_lbfgs_on_the_raw_objective(lam):
    """Tolerance: L-BFGS stops at a relative gradient ~1e-9 on a smooth non-convex factorisation
    (whose local minima are global, Z = E Eᵀ ⪰ 0 with width V); 1e-4 relative on a bucket loss
    leaves room for its stopping error and none for a wrong decay scale (λ vs λ/2 moves it by > 1 %)."""
    ids, V = _stream(), 5
    C = bigram_counts(ids, V)
    pi = np.bincount(ids[1:], minlength=V) / (ids.size - 1)
    lines = factored_lines(C, pi, [lam], tied=True)
    sums = _tied_factored_by_lbfgs(C.toarray(), lam)
    b = frequency_buckets(pi)
    cnt = np.asarray(C.sum(0)).ravel()
    for j in range(lines.bucket_loss.shape[1]):
        assert lines.bucket_loss[0, j] == pytest.approx(sums[b == j].sum() / cnt[b == j].sum(), rel=1e-4)
    assert lines.collapse_frequency[0] == pytest.approx(lam / 2)
    assert lines.below_collapse[0] == pytest.approx(np.mean(pi[pi > 0] <= lam / 2))
