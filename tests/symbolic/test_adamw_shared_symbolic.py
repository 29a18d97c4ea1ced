"""T10 derivations: per-coordinate gradient moments of the factored bigram LM, checked against
torch autograd per-sample gradients on random instances (independent of both the sympy algebra
and the numeric closed forms of imbalance.theory.adamw_shared)."""

import doctest
import itertools

import numpy as np
import pytest
import sympy as sp
import torch

from imbalance.symbolic import adamw_shared as S
from imbalance.theory import adamw_shared as T


def test_docstring_examples():
    result = doctest.testmod(S, extraglobs={"sp": sp})
    assert result.failed == 0 and result.attempted > 0


def _instance(seed, C=3, V=3, d=2, r=1.3):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, size=(C, V)).astype(float)
    counts[0, 0] += 1  # at least one count
    counts[-1] = 0  # one unseen context: its moments are zero
    counts[0, -1] = 0
    return counts, rng.normal(size=(V, d)), rng.normal(size=(C, d)), r


def _autograd_pairs(counts, W, E, r):
    """[(J(x, y), ∂CE/∂W, ∂CE/∂E)] for every observed pair, from torch autograd."""
    J = counts / counts.sum()
    out = []
    for x, y in zip(*np.nonzero(J)):
        Wt = torch.tensor(W, requires_grad=True)
        Et = torch.tensor(E, requires_grad=True)
        z = r * Wt @ Et[x]  # (V,)
        loss = torch.logsumexp(z, 0) - z[y]
        gW, gE = torch.autograd.grad(loss, (Wt, Et))
        out.append((J[x, y], gW.numpy(), gE.numpy()))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_numeric_moments_match_autograd_per_sample_gradients(seed):
    counts, W, E, r = _instance(seed)
    pairs = _autograd_pairs(counts, W, E, r)
    mW = sum(w * gW for w, gW, _ in pairs)
    sW = sum(w * gW**2 for w, gW, _ in pairs)
    mE = sum(w * gE for w, _, gE in pairs)
    sE = sum(w * gE**2 for w, _, gE in pairs)
    got = T.sample_moments(W, E, T.bigram_law(counts), r)
    for a, b in zip(got, (mW, sW, mE, sE)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_sympy_conditional_moments_match_autograd(seed):
    V, d = 3, 2
    counts, W, E, r = _instance(seed, C=2, V=V, d=d)
    Ws, es, qs = S.factored_symbols(V, d)
    exprs = S.closed_form_moments(Ws, es, qs)
    x = 0
    q = counts[x] / counts[x].sum()
    subs = {S.r: r, **{Ws[j, k]: W[j, k] for j in range(V) for k in range(d)},
            **{es[k]: E[x, k] for k in range(d)}, **{qs[j]: q[j] for j in range(V - 1)}}
    num = [np.array(sp.Matrix(e).subs(subs).evalf(30), dtype=float) for e in exprs]
    pairs = _autograd_pairs(counts[[x]], W, E[[x]], r)  # context 0 only: weights = q(y|x)
    ref = (sum(w * gW for w, gW, _ in pairs), sum(w * gW**2 for w, gW, _ in pairs),
           sum(w * gE[0] for w, _, gE in pairs), sum(w * gE[0] ** 2 for w, _, gE in pairs))
    for a, b in zip(num, ref):
        np.testing.assert_allclose(a.reshape(b.shape), b, rtol=1e-12, atol=1e-14)


def test_minibatch_rule_against_enumerated_pairs_of_samples():
    # B = 2: enumerate every ordered pair of samples, g = (G_i + G_j)/2, weights J_i J_j
    counts, W, E, r = _instance(7)
    pairs = _autograd_pairs(counts, W, E, r)
    Eg2 = sum(wi * wj * ((gi + gj) / 2) ** 2 for (wi, gi, _), (wj, gj, _) in itertools.product(pairs, pairs))
    mW, sW, *_ = T.sample_moments(W, E, T.bigram_law(counts), r)
    rule = S.minibatch_second_moment()
    f = sp.lambdify((S.G, S.G2, S.B), rule)
    np.testing.assert_allclose(f(mW, sW, 2), Eg2, rtol=1e-12, atol=1e-15)


def _autograd_tied_pairs(counts, E, r):
    """[(J(x, y), ∂CE/∂E)] of the tied model z_x = r E e_x for every observed pair, from autograd:
    E enters twice (context row and unembedding), autograd adds both parts."""
    J = counts / counts.sum()
    out = []
    for x, y in zip(*np.nonzero(J)):
        Et = torch.tensor(E, requires_grad=True)
        z = r * Et @ Et[x]  # (V,)
        loss = torch.logsumexp(z, 0) - z[y]
        out.append((J[x, y], torch.autograd.grad(loss, Et)[0].numpy()))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_tied_moments_match_enumerated_autograd_gradients(seed):
    """E[G] and E[G²] of the tied model, summed exactly over every (x, y) with weight J(x, y); the
    cross term matters: without it E[G²] differs (checked on the same instance)."""
    counts, _, E, r = _instance(seed, C=4, V=4, d=3)
    pairs = _autograd_tied_pairs(counts, E, r)
    mean, sq = T.tied_sample_moments(E, T.bigram_law(counts), r)
    np.testing.assert_allclose(mean, sum(w * g for w, g in pairs), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sq, sum(w * g**2 for w, g in pairs), rtol=1e-12, atol=1e-14)
    _, sW, _, sE = T.sample_moments(E, E, T.bigram_law(counts), r)
    assert np.abs(sW + sE - sq).max() > 1e-3  # the untied sum is not the tied second moment


def test_tied_minibatch_update_against_enumerated_pairs_of_samples():
    """B = 2: E[g] and E[g²] of the tied minibatch mean by enumerating every ordered pair of samples,
    and the normalised update E[g]/(√E[g²] + ε) + λE of ``tied_stationarity`` recomputed from them."""
    counts, _, E, r = _instance(11, C=3, V=3, d=2)
    pairs = _autograd_tied_pairs(counts, E, r)
    Eg = sum(wi * wj * (gi + gj) / 2 for (wi, gi), (wj, gj) in itertools.product(pairs, pairs))
    Eg2 = sum(wi * wj * ((gi + gj) / 2) ** 2 for (wi, gi), (wj, gj) in itertools.product(pairs, pairs))
    lam, eps = 0.3, 1e-3
    F = T.tied_stationarity(E, T.bigram_law(counts), lam, batch_size=2, eps=eps, r=r)
    np.testing.assert_allclose(F, Eg / (np.sqrt(Eg2) + eps) + lam * E, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("seed", range(2))
def test_sympy_tied_moments_match_autograd(seed):
    """The sympy tied closed form given context x = 1, evaluated at a random point, against autograd
    per-sample gradients summed over y with weights q(y|x)."""
    V, d, x = 3, 2, 1
    counts, _, E, r = _instance(seed, C=V, V=V, d=d)
    counts[x] = np.array([1.0, 2.0, 3.0])  # every successor seen after context x
    Es, _, qs = S.factored_symbols(V, d)
    q = counts[x] / counts[x].sum()
    subs = {S.r: r, **{Es[j, k]: E[j, k] for j in range(V) for k in range(d)}, **{qs[j]: q[j] for j in range(V - 1)}}
    num = [np.array(m.subs(subs).evalf(30), dtype=float) for m in S.tied_closed_form_moments(Es, x, qs)]
    only_x = np.zeros_like(counts)
    only_x[x] = counts[x]
    pairs = _autograd_tied_pairs(only_x, E, r)  # weights q(y|x)
    np.testing.assert_allclose(num[0], sum(w * g for w, g in pairs), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(num[1], sum(w * g**2 for w, g in pairs), rtol=1e-12, atol=1e-14)
