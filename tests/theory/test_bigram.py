"""T2/T3: the bigram model against a generic optimiser, independent stationarity
checks, and the deterministic margin law."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from imbalance import bigram_equilibrium, margin_law, zipf_pmf


def _counts(seed=0, n_ctx=7, V=9, rate=0.6):
    C = np.random.default_rng(seed).poisson(rate, size=(n_ctx, V)).astype(float)
    C[3] = 0.0            # a context never seen
    C[:, 5] = 0.0         # a token never seen as target
    return C


def _l2_objective(wflat, C, lam, r):
    """Σ_x P(x) CE(q_x, r w_x) + (λ/2)‖W‖², W of shape (n_ctx, V), and its gradient."""
    W = wflat.reshape(C.shape)
    P = C.sum(1) / C.sum()
    Q = np.divide(C, C.sum(1, keepdims=True), out=np.zeros_like(C), where=C.sum(1, keepdims=True) > 0)
    Z = r * W
    f = -(P[:, None] * Q * log_softmax(Z, axis=1)).sum() + 0.5 * lam * (W * W).sum()
    g = r * P[:, None] * (softmax(Z, axis=1) - Q) + lam * W
    return f, g.ravel()


@pytest.mark.parametrize("lam,r", [(1e-3, 1.0), (0.05, 2.0), (1.0, 0.5)])
def test_sgd_matches_generic_lbfgs(lam, r):
    C = _counts()
    res = minimize(_l2_objective, np.zeros(C.size), args=(C, lam, r), jac=True, method="L-BFGS-B",
                   options=dict(gtol=1e-13, ftol=1e-16, maxiter=50_000))
    eq = bigram_equilibrium(C, lam, r=r)
    W = eq.logits() / r
    # λ-strong convexity: ‖W − W*‖ <= ‖∇f(W_lbfgs)‖/λ
    grad = np.linalg.norm(_l2_objective(res.x, C, lam, r)[1])
    assert np.linalg.norm(res.x - W.ravel()) <= grad / lam + 1e-12
    f_eq = _l2_objective(W.ravel(), C, lam, r)[0]
    assert f_eq <= res.fun + 8 * np.finfo(float).eps * abs(res.fun)
    # the reported minimum value: the raw objective at our point (rounding of a sum of C.size
    # terms), and at most L-BFGS's value, which strong convexity puts within ‖∇f‖²/(2λ) of it
    assert abs(eq.objective - f_eq) <= 4 * C.size * np.finfo(float).eps * abs(f_eq)
    assert res.fun - grad ** 2 / (2 * lam) - 1e-15 <= eq.objective <= res.fun + 8 * np.finfo(float).eps * abs(res.fun)


def test_loss_fields_follow_their_definitions():
    C = _counts(seed=3)
    eq = bigram_equilibrium(C, [0.01, 0.2])
    for i in range(2):
        nll = -np.log(eq.probs()[i])                     # (n_ctx, V)
        tok = C.sum(0)
        with np.errstate(invalid="ignore"):
            per_token = (C * nll).sum(0) / tok
        np.testing.assert_allclose(eq.loss_per_token[i][tok > 0], per_token[tok > 0], rtol=1e-12)
        assert np.isnan(eq.loss_per_token[i][5])
        np.testing.assert_allclose(eq.aggregate_loss[i], (C * nll).sum() / C.sum(), rtol=1e-12)
        np.testing.assert_allclose(eq.token_balanced_loss[i], per_token[tok > 0].mean(), rtol=1e-12)
        # the unseen context predicts uniformly (w = 0 minimises its decay alone)
        np.testing.assert_allclose(eq.probs()[i][3], 1 / C.shape[1], rtol=1e-15)
        np.testing.assert_allclose(eq.probs()[i].sum(1), 1.0, rtol=1e-13)


def test_dense_and_sparse_inputs_agree():
    C = _counts(seed=5)
    for opt in ("sgd", "adamw"):
        a = bigram_equilibrium(C, 0.1, optimizer=opt, batch_size=16)
        for S in (sp.csr_matrix(C), sp.coo_matrix(C), sp.csc_matrix(C)):
            b = bigram_equilibrium(S, 0.1, optimizer=opt, batch_size=16)
            np.testing.assert_array_equal(a.probs(), b.probs())


def _adamw_ratio(P, q, p, r, B, eps):
    """E[g]/(√E[g²] + ε) per coordinate, from the three-point law of one sample's gradient
    a = 1{x_i = x} r (p − 1{y_i = j}): r(p − 1) w.p. P q, r p w.p. P (1 − q), 0 otherwise;
    the minibatch mean of B i.i.d. copies has E g = E a, E g² = (E a)² + Var a / B."""
    Ea = P * q * r * (p - 1) + P * (1 - q) * r * p
    Ea2 = P * q * (r * (p - 1)) ** 2 + P * (1 - q) * (r * p) ** 2
    Eg2 = Ea ** 2 + (Ea2 - Ea ** 2) / B
    return Ea / (np.sqrt(Eg2) + eps)


@pytest.mark.parametrize("lam,B,eps,r", [(0.02, 8, 1e-8, 1.0), (0.3, 64, 1e-8, 1.0), (0.05, 4, 1e-3, 2.0),
                                         (1e-4, 32, 1e-8, 1.0)])
def test_adamw_satisfies_stationarity_from_returned_logits(lam, B, eps, r):
    C = _counts(seed=11, n_ctx=6, V=12, rate=1.5)
    eq = bigram_equilibrium(C, lam, r=r, optimizer="adamw", batch_size=B, eps=eps)
    Z = eq.logits()
    P = C.sum(1) / C.sum()
    for x in np.flatnonzero(P > 0):
        q = C[x] / C[x].sum()
        p = softmax(Z[x])
        ratio = _adamw_ratio(P[x], q, p, r, B, eps)
        rho = np.sqrt(B * P[x] / (1 + (B - 1) * P[x]))
        # λ w = −E g/(√E g² + ε), w = z/r; |ratio| <= ρ sets the scale
        np.testing.assert_allclose(lam * Z[x] / r, -ratio, rtol=0, atol=1e-9 * rho)


def test_adamw_equilibrium_is_not_the_l2_minimiser():
    C = _counts(seed=2, rate=1.0)
    a = bigram_equilibrium(C, 0.05, optimizer="adamw", batch_size=32)
    s = bigram_equilibrium(C, 0.05, optimizer="sgd")
    assert np.max(np.abs(a.probs() - s.probs())) > 0.05


@pytest.mark.parametrize("opt,eps", [("sgd", 1e-8), ("adamw", 0.0), ("adamw", 1e-8), ("adamw", 1e-3)])
@pytest.mark.parametrize("lam", [1e-6, 1e-2, 0.3, 10.0])
def test_margin_law_agrees_with_full_solve_of_diagonal_counts(opt, eps, lam):
    pi = zipf_pmf(40, 1.2)
    ml = margin_law(pi, lam, optimizer=opt, batch_size=64, eps=eps)
    be = bigram_equilibrium(np.diag(pi), lam, optimizer=opt, batch_size=64, eps=eps)
    Z = be.logits()
    margins = np.diag(Z) - Z[np.arange(40), (np.arange(40) + 1) % 40]
    np.testing.assert_allclose(ml.margins, margins, rtol=1e-9)
    np.testing.assert_allclose(ml.loss_per_token, be.loss_per_token, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("lam,r", [(1e-5, 1.0), (0.01, 3.0), (2.0, 1.0)])
def test_sgd_margin_law_solves_its_scalar_equation(lam, r):
    pi = zipf_pmf(100, 1.0)
    K = pi.size
    m = margin_law(pi, lam, r=r).margins
    kap = K * pi * r * r / ((K - 1) * lam)
    # m (e^m + K − 1) = κ'(K − 1), compared in logs to avoid overflow
    lhs = np.log(m) + np.logaddexp(m, np.log(K - 1))
    np.testing.assert_allclose(lhs, np.log(kap * (K - 1)), rtol=1e-13, atol=1e-13)


def test_adamw_margin_law_eps_to_zero_limit():
    pi = zipf_pmf(30, 1.5)
    K, B, lam = 30, 16, 0.1
    rho = np.sqrt(B * pi / (1 + (B - 1) * pi))
    m0 = 2 * rho / lam
    np.testing.assert_allclose(margin_law(pi, lam, optimizer="adamw", batch_size=B, eps=0.0).margins, m0, rtol=1e-14)
    # each term t/(s t + ε) differs from 1/s by a relative ε/(s t); the smallest t is the
    # other-class probability c = 1/(e^m + K − 1), so |m_ε − m_0|/m_0 <= ε/(r s c)
    # exactly (r = 1 here; proofs/T3_adamw.md, statement 5)
    s = np.sqrt(pi * (1 + (B - 1) * pi) / B)
    c0 = 1 / (np.exp(m0) + K - 1)
    prev = np.inf
    for eps in (1e-6, 1e-9, 1e-12, 1e-15):
        m = margin_law(pi, lam, optimizer="adamw", batch_size=B, eps=eps).margins
        dev = np.abs(m - m0) / m0
        assert np.all(m <= m0) and np.all(dev <= eps / (s * c0))
        assert dev.max() < prev
        prev = dev.max()


def test_sparse_matrix_with_many_contexts_is_solved_in_sparse_form():
    rng = np.random.default_rng(0)
    n, V, nnz = 20_000, 30_000, 60_000
    C = sp.csr_matrix((rng.integers(1, 5, nnz).astype(float), (rng.integers(0, n, nnz), rng.integers(0, V, nnz))),
                      shape=(n, V))
    for opt in ("sgd", "adamw"):
        eq = bigram_equilibrium(C, [0.01, 0.1], optimizer=opt, batch_size=64)
        assert eq.probs_nz.shape == (2, C.nnz) and eq.probs_absent.shape == (2, n)
        assert np.isfinite(eq.aggregate_loss).all()
        rows = eq.probs(contexts=[0, 17])
        np.testing.assert_allclose(rows.sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("kwargs,name", [
    (dict(counts=-np.eye(3)), "counts"), (dict(counts=np.full((2, 2), np.nan)), "counts"),
    (dict(counts=np.zeros((2, 2))), "counts"), (dict(counts=np.ones(3)), "counts"),
    (dict(counts=np.ones((3, 1))), "counts"), (dict(lam=0.0), "lam"), (dict(lam=np.nan), "lam"),
    (dict(optimizer="adam"), "optimizer"), (dict(optimizer="adamw"), "batch_size"),
    (dict(optimizer="adamw", batch_size=0), "batch_size"), (dict(r=0.0), "r"), (dict(r=-1.0), "r"),
    (dict(optimizer="adamw", batch_size=8, eps=-1.0), "eps"),
])
def test_rejects_bad_input(kwargs, name):
    args = dict(counts=np.eye(3), lam=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        bigram_equilibrium(args.pop("counts"), args.pop("lam"), **args)


@pytest.mark.parametrize("kwargs,name", [(dict(pi=[0.4, 0.4]), "pi"), (dict(lam=-1.0), "lam"),
                                         (dict(optimizer="adamw"), "batch_size"), (dict(r=np.inf), "r"),
                                         (dict(optimizer="sgdm"), "optimizer")])
def test_margin_law_rejects_bad_input(kwargs, name):
    args = dict(pi=[0.5, 0.5], lam=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        margin_law(args.pop("pi"), args.pop("lam"), **args)


def _dense_adjusted(eq, tau, C, pi):
    """Brute force: dense logits − τ log π, scipy log_softmax, count-weighted per-token losses."""
    lp = log_softmax(eq.logits() - tau * np.log(pi), axis=-1)  # (L, n_ctx, V)
    nll = -(C * lp)
    n_tok = C.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tok = nll.sum(-2) / n_tok
    return tok, nll.sum((-2, -1)) / C.sum()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_logit_adjusted_losses_match_dense_brute_force(optimizer):
    """T6c: the O(nnz) adjusted losses equal a dense log-softmax of z − τ log π."""
    C = _counts(seed=4)
    C[:, 5] = 1.0  # every token a target (π > 0), one context sees every token
    C[0] += 1.0
    C[3] = 0.0
    pi = C.sum(0) / C.sum()
    eq = bigram_equilibrium(C, [1e-3, 0.1, 2.0], optimizer=optimizer, batch_size=16 if optimizer == "adamw" else None)
    for tau in (0.0, 0.3, 1.0, 2.5):
        ad = eq.logit_adjusted(tau)
        tok, agg = _dense_adjusted(eq, tau, C, pi)
        assert np.allclose(ad.loss_per_token, tok, rtol=1e-12, atol=0)
        assert np.allclose(ad.aggregate_loss, agg, rtol=1e-12, atol=0)
        assert np.allclose(ad.token_balanced_loss, tok.mean(-1), rtol=1e-12, atol=0)
    # a user-supplied prior (smoothed, not the target marginal), scalar λ
    eq1 = bigram_equilibrium(C, 0.05, optimizer=optimizer, batch_size=16 if optimizer == "adamw" else None)
    prior = pi + 0.01
    ad = eq1.logit_adjusted(0.7, pi=prior)
    tok, agg = _dense_adjusted(eq1, 0.7, C, prior / prior.sum())
    assert np.allclose(ad.loss_per_token, tok, rtol=1e-12) and np.isclose(ad.aggregate_loss, agg, rtol=1e-12)


def test_logit_adjusted_tau_one_approaches_balanced_bayes_as_decay_vanishes():
    """T6c(2): as λ → 0 the L2 equilibrium tends to q, so τ = 1 attains the minimum token-balanced
    loss, computed directly from q and π (p ∝ q/π per context); the excess shrinks with λ."""
    C = np.random.default_rng(7).poisson(2.0, size=(6, 8)).astype(float) + np.eye(6, 8)
    C[:, 7] += 1.0
    Q = C / C.sum(1, keepdims=True)
    pi = C.sum(0) / C.sum()
    best = log_softmax(np.log(np.where(Q > 0, Q, 1e-300)) - np.log(pi), axis=1)
    floor = np.mean(-(C * best).sum(0) / C.sum(0))
    excess = []
    for lam in (1e-2, 1e-4, 1e-6):
        ad = bigram_equilibrium(C, lam).logit_adjusted(1.0)
        excess.append(ad.token_balanced_loss - floor)
    assert all(e >= -1e-12 for e in excess)
    assert excess[0] > excess[1] > excess[2] and excess[2] < 1e-4


def test_logit_adjusted_rejects_bad_input():
    C = _counts(seed=1)  # token 5 is never a target: π_5 = 0
    eq = bigram_equilibrium(C, 0.1)
    with pytest.raises(ValueError, match="tau"):
        eq.logit_adjusted(-1.0)
    with pytest.raises(ValueError, match="pi has zero entries"):
        eq.logit_adjusted(0.5)
    with pytest.raises(ValueError, match="pi must be"):
        eq.logit_adjusted(0.5, pi=np.ones(3))
    assert np.allclose(eq.logit_adjusted(0.0).loss_per_token, eq.loss_per_token, equal_nan=True)
    assert np.isfinite(eq.logit_adjusted(0.5, pi=np.ones(C.shape[1])).aggregate_loss)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_predicted_marginal_matches_dense(optimizer):
    """Σ_x P(x) p(·|x) in O(nnz) against the dense probabilities; decay flattens it towards uniform."""
    C = _counts(seed=2)
    eq = bigram_equilibrium(C, [1e-3, 1.0, 1e3], optimizer=optimizer, batch_size=8 if optimizer == "adamw" else None)
    P = C.sum(1) / C.sum()
    ref = np.einsum("x,lxv->lv", P, eq.probs())
    got = eq.predicted_marginal()
    assert np.allclose(got, ref, rtol=1e-13, atol=1e-16) and np.allclose(got.sum(-1), 1.0, rtol=1e-13)
    pi = C.sum(0) / C.sum()
    tv = 0.5 * np.abs(got - pi).sum(-1)
    to_uniform = 0.5 * np.abs(got - 1.0 / C.shape[1]).sum(-1)
    assert to_uniform[-1] < to_uniform[0] and tv[-1] > tv[0]
