"""AdamW equilibrium of the factored bigram LM / UFM (T10) against independent computations:
stationarity rebuilt from enumerated per-sample gradients (not the closed forms), a generic
least-squares solve of that raw system, the KKT conditions of the ℓ∞-box problem (full batch,
small ε, with the loss gradient from finite differences), and a short AdamW simulation."""

import numpy as np
import pytest
import scipy.optimize
import torch

from imbalance.sim import BigramTask, FactoredBigram, sweep
from imbalance.theory import FactoredBigramEquilibrium, factored_bigram_equilibrium, ufm_equilibrium
from imbalance.theory.adamw_shared import factored_bigram_adamw_equilibrium, ufm_counts
from imbalance.theory.factored_dynamics import factored_adamw_trajectory

COUNTS = np.array([[6.0, 2, 1, 0], [1, 4, 0, 1], [0, 1, 3, 1], [2, 0, 0, 1]])


def _init(seed, V=4, C=4, d=2, scale=0.3):
    rng = np.random.default_rng(seed)
    return scale * rng.normal(size=(V, d)), scale * rng.normal(size=(C, d))


def _raw_stationarity(theta, counts, lam, B, eps, V, d):
    """F from per-sample gradients enumerated pair by pair (numpy, no closed-form moments)."""
    W, E = theta[:V * d].reshape(V, d), theta[V * d:].reshape(-1, d)
    J = counts / counts.sum()
    m, s = np.zeros_like(theta), np.zeros_like(theta)
    for x, y in zip(*np.nonzero(J)):
        z = W @ E[x]
        p = np.exp(z - z.max())
        p /= p.sum()
        dz = p - np.eye(V)[y]  # ∂CE/∂z
        gW = np.zeros_like(W)
        gW += np.outer(dz, E[x])
        gE = np.zeros_like(E)
        gE[x] = W.T @ dz
        G = np.concatenate([gW.ravel(), gE.ravel()])
        m += J[x, y] * G
        s += J[x, y] * G * G
    v = m * m if B is None else s / B + (1 - 1 / B) * m * m
    return m / (np.sqrt(v) + eps) + lam * theta


@pytest.mark.parametrize("B", [4, 32])
def test_certificate_holds_for_the_raw_stationarity_system(B):
    lam, W0, E0 = 0.5, *_init(0)
    eq = factored_bigram_adamw_equilibrium(COUNTS, lam, init=(W0, E0), batch_size=B)
    theta = np.concatenate([eq.W.ravel(), eq.E.T.ravel()])
    raw = _raw_stationarity(theta, COUNTS, lam, B, 1e-8, 4, 2)
    assert eq.residual < 1e-9
    assert np.abs(raw).max() < 1e-9
    # a generic least-squares solve of the raw system, from a perturbed start, returns to this root
    rng = np.random.default_rng(1)
    ls = scipy.optimize.least_squares(lambda t: _raw_stationarity(t, COUNTS, lam, B, 1e-8, 4, 2),
                                      theta + 1e-3 * rng.normal(size=theta.size), xtol=1e-15, ftol=1e-15, gtol=1e-15)
    assert np.abs(ls.fun).max() < 1e-9
    np.testing.assert_allclose(ls.x, theta, atol=1e-6)


def _loss(theta, counts, V, d):
    W, E = theta[:V * d].reshape(V, d), theta[V * d:].reshape(-1, d)
    Z = E @ W.T
    lse = np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1)) + Z.max(1)
    J = counts / counts.sum()
    return float((J * (lse[:, None] - Z)).sum())


@pytest.mark.parametrize("lam", [0.5, 3.0])
def test_full_batch_is_an_eps_kkt_point_of_the_linf_box(lam):
    """Xie & Li (2024, arXiv 2404.04454): full batch, ε → 0, AdamW fixed points are KKT points of
    min L s.t. ‖θ‖_∞ ≤ 1/λ. With ε > 0, F = 0 reads |∂_i L| (1 − λ|θ_i|) = ε λ |θ_i| with
    θ_i ∂_i L ≤ 0: the KKT conditions with multiplier ε λ|θ_i|/(1 − λ|θ_i|) → 0 off the box.
    Checked with ∂L by central differences of the raw loss (relative error ≲ 1e-6)."""
    eps = 1e-3
    eq = factored_bigram_adamw_equilibrium(COUNTS, lam, init=_init(2), batch_size=None, eps=eps)
    assert eq.residual < 1e-9
    theta = np.concatenate([eq.W.ravel(), eq.E.T.ravel()])
    h = 1e-6
    grad = np.array([(_loss(theta + h * e, COUNTS, 4, 2) - _loss(theta - h * e, COUNTS, 4, 2)) / (2 * h)
                     for e in np.eye(theta.size)])
    slack = 1 - lam * np.abs(theta)
    assert slack.min() > 0  # inside the box
    assert np.all(theta * grad < 0)
    np.testing.assert_allclose(np.abs(grad) * slack, eps * lam * np.abs(theta), rtol=1e-4)
    if lam == 3.0:  # the unconstrained fit lies outside this box: some coordinates press on it
        assert slack.min() < 0.05


def test_ufm_is_the_factored_model_on_diagonal_counts():
    """Through ufm_equilibrium(optimizer="adamw"), in the L2 result type: a UFM class loss is
    −log p_k(h_k), recomputed from the returned factors. ε = 1e-7: with d = 2 < K = 3 a feature
    coordinate sits inside its box, a sign switch ~ε wide, which float64 resolves at ε ≥ 1e-7 from
    every start tried and at ε = 1e-8 from some only (proofs/T10, "Switch-like coordinates")."""
    pi = np.array([0.5, 0.3, 0.2])
    eq = ufm_equilibrium(pi, 0.5, 0.5, optimizer="adamw", init=_init(3, V=3, C=3), batch_size=8, eps=1e-7)
    assert eq.optimizer == "adamw" and eq.residual < 1e-9 and np.isnan(eq.gap)
    Z = eq.H.T @ eq.W.T  # (features, classes)
    lp = Z - np.log(np.exp(Z).sum(1, keepdims=True))
    np.testing.assert_allclose(eq.logits, Z, rtol=1e-12)
    np.testing.assert_allclose(eq.loss_per_token, -np.diag(lp), rtol=1e-12)
    assert ufm_counts(pi, 2).shape == (6, 3)


def test_short_adamw_simulation_lands_on_the_prediction():
    """4 seeds of AdamW (lr 1e-2, 6,000 steps = 30/λ of flow time, iterate average of the last
    2,000) from the sweep's own initialisations. Tolerance per token: 3 seed standard errors plus a
    stated 2 % bias allowance for finite lr (the stationary noise of T3)."""
    lam, B, seeds = 0.5, 16, (0, 1, 2, 3)
    task = BigramTask(COUNTS)
    model = FactoredBigram(width=2, init_scale=0.3)
    res = sweep(task, [lam], model=model, optimizer="adamw", steps=6000, batch_size=B, lr=1e-2, seeds=seeds,
                average_last=2000, progress=False, eval_every=6000)
    sim = res.loss_per_token_avg[0]  # (S, V)
    pred = []
    for s in seeds:
        p = model.init(task, [torch.Generator().manual_seed(s)], torch.float64)
        eq = factored_bigram_adamw_equilibrium(COUNTS, lam, init=(p["W"][0].numpy(), p["E"][0].numpy()),
                                               batch_size=B)
        assert eq.residual < 1e-8
        pred.append(eq.loss_per_token)
    pred = np.mean(pred, 0)
    se = sim.std(0, ddof=1) / np.sqrt(len(seeds))
    np.testing.assert_array_less(np.abs(sim.mean(0) - pred), 3 * se + 0.02 * pred)


def _raw_tied_stationarity(E, counts, lam, B, eps):
    """F of the tied model from per-sample gradients enumerated pair by pair (numpy): row x gets the
    input part Eᵀ(p − e_y), every row j the output part (p_j − 1{y=j}) E_x."""
    J = counts / counts.sum()
    m, s = np.zeros_like(E), np.zeros_like(E)
    for x, y in zip(*np.nonzero(J)):
        z = E @ E[x]
        p = np.exp(z - z.max())
        p /= p.sum()
        dz = p - np.eye(E.shape[0])[y]  # ∂CE/∂z
        G = np.outer(dz, E[x])
        G[x] += E.T @ dz
        m += J[x, y] * G
        s += J[x, y] * G * G
    return m / (np.sqrt(s / B + (1 - 1 / B) * m * m) + eps) + lam * E


def test_tied_certificate_holds_for_the_raw_stationarity_system():
    """The tied equilibrium (one matrix, one decay) zeroes the raw tied system, and a generic
    least-squares solve of that system from a perturbed start returns to it."""
    lam, B, E0 = 0.5, 8, _init(3)[1]
    eq = factored_bigram_equilibrium(COUNTS, lam=lam, tied=True, optimizer="adamw", init=E0, batch_size=B)
    assert eq.tied and eq.residual < 1e-9
    E = eq.W
    np.testing.assert_array_equal(E, eq.E.T)
    assert np.abs(_raw_tied_stationarity(E, COUNTS, lam, B, 1e-8)).max() < 1e-9
    rng = np.random.default_rng(2)
    def raw(t):
        return _raw_tied_stationarity(t.reshape(E.shape), COUNTS, lam, B, 1e-8).ravel()

    ls = scipy.optimize.least_squares(raw, (E + 1e-3 * rng.normal(size=E.shape)).ravel(), xtol=1e-15, ftol=1e-15,
                                      gtol=1e-15)
    assert np.abs(ls.fun).max() < 1e-9
    np.testing.assert_allclose(ls.x.reshape(E.shape), E, atol=1e-6)


def test_short_tied_adamw_simulation_lands_on_the_prediction():
    """Tied AdamW (4 seeds, lr 1e-2, 3,000 steps = 15/λ of flow time, iterate average of the last 1,000)
    from the sweep's own tied initialisations, against the tied equilibrium of each. Tolerance per
    token: 3 seed standard errors plus the stated 2 % finite-lr bias allowance of the untied test above."""
    lam, B, seeds = 0.5, 16, (0, 1, 2, 3)
    task = BigramTask(COUNTS)
    model = FactoredBigram(width=2, init_scale=0.3, tied=True)
    res = sweep(task, [lam], model=model, optimizer="adamw", steps=3000, batch_size=B, lr=1e-2, seeds=seeds,
                average_last=1000, progress=False, eval_every=3000)
    sim = res.loss_per_token_avg[0]  # (S, V)
    pred = []
    for s in seeds:
        E0 = model.init(task, [torch.Generator().manual_seed(s)], torch.float64)["E"][0].numpy()
        eq = factored_bigram_adamw_equilibrium(COUNTS, lam, init=E0, batch_size=B, tied=True)
        assert eq.residual < 1e-8
        pred.append(eq.loss_per_token)
    pred = np.mean(pred, 0)
    se = sim.std(0, ddof=1) / np.sqrt(len(seeds))
    np.testing.assert_array_less(np.abs(sim.mean(0) - pred), 3 * se + 0.02 * pred)


@pytest.mark.parametrize("kw, name", [({"lam": -1.0}, "lam"), ({"init": (np.zeros((3, 2)), np.zeros((4, 2)))}, "init"),
                                      ({"batch_size": 0}, "batch_size"), ({"polish": "newton"}, "polish"),
                                      ({"eps": -1.0}, "eps")])
def test_bad_input_names_the_parameter(kw, name):
    args = {"lam": 0.5, "init": _init(0), **kw}
    with pytest.raises(ValueError, match=name):
        factored_bigram_adamw_equilibrium(COUNTS, args.pop("lam"), **args)


@pytest.mark.parametrize("kw, name", [({"select": "noise"}, "select"), ({"select": "adamw", "steps": 10}, "lr"),
                                      ({"select": "adamw", "lr": 1e-2}, "steps"), ({"lr": 1e-2}, "select"),
                                      ({"select": "adamw", "lr": 1e-2, "steps": 0}, "steps"),
                                      ({"select": "adamw", "lr": -1.0, "steps": 10}, "lr"),
                                      ({"select": "adamw", "lr": 1e-2, "steps": 10, "betas": (0.9, 1.0)}, "betas"),
                                      ({"select": "adamw", "lr": 1e-2, "steps": 10,
                                        "row_decay": (np.ones(4), np.ones(4))}, "select"),
                                      ({"select": "adamw", "lr": 1e-2, "steps": 10,
                                        "shared_second_moment": np.True_}, "select"),
                                      ({"select": "adamw", "lr": 2.0, "steps": 10}, "lr")])
def test_bad_selection_names_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        factored_bigram_adamw_equilibrium(COUNTS, 0.5, init=_init(0), batch_size=8, **kw)


def test_adamw_selection_is_the_recursions_limit():
    """``select="adamw"``: the root the mean-field AdamW recursion leads to. With W and E decayed
    differently, ``factored_adamw_trajectory`` (the recursion, run on its own) approaches the
    returned root: its per-token loss over the last logs moves monotonically
    toward the root's and ends within 2e-4 (relative; a settled recursion sits exactly on a root of
    F — its fixed point has m̂ = E[g], v̂ = E[g²], λθ = −m̂/(√v̂ + ε) — but the slowest modes settle
    slowly: 4e-3 after 6,000 steps, 5e-5 after 20,000). And the certificate holds for the raw,
    pair-by-pair stationarity."""
    counts = BigramTask.stochastic_zipf(6, 1.1, 0.7).counts
    W0, E0 = _init(2, V=6, C=6, d=3, scale=0.1)
    lam_W, lam_E, B, lr, steps = 0.4, 0.2, 16, 1e-2, 20_000
    eq = factored_bigram_adamw_equilibrium(counts, lam_W, lam_e=lam_E, init=(W0, E0), batch_size=B,
                                           select="adamw", lr=lr, steps=steps)
    traj = factored_adamw_trajectory(counts, E0[None], W0[None], lam=lam_E, lam_W=lam_W, steps=steps, lr=lr,
                                     batch_size=B, eval_every=steps // 10)
    assert eq.residual < 1e-9
    dev = np.abs(traj.loss_per_token[0, -4:] / eq.loss_per_token - 1).max(1)  # (4,)
    assert (np.diff(dev) < 0).all() and dev[-1] < 2e-4
    theta = np.concatenate([eq.W.ravel(), eq.E.T.ravel()])  # E of the result holds the contexts as columns
    lam = np.concatenate([np.full(eq.W.size, lam_W), np.full(eq.E.size, lam_E)])
    F = _raw_stationarity(theta, counts, 0.0, B, 1e-8, 6, 3) + lam * theta
    assert np.abs(F).max() < 1e-8


@pytest.mark.parametrize("B", [16, None])
def test_mean_field_adamw_step_against_enumerated_samples(B):
    """Three steps of the mean-field recursion with β = (0, 0) and ε = 0 are
    θ ← (1 − ηλ)θ − η E[g]/√E[g²] with W and E decayed by their own λ; E[g] and E[g²] recomputed
    from per-sample gradients enumerated pair by pair (``_raw_stationarity`` with λ = 0), B = None
    the full batch (E[g²] = E[g]²)."""
    from imbalance.theory.adamw_shared import bigram_law, mean_field_adamw_path

    W, E = _init(3)
    lr, lam_W, lam_E = 0.05, 0.7, 0.2
    path = mean_field_adamw_path(E, W, bigram_law(COUNTS), r=1.0, B=B, lr=lr, lams=(lam_E, lam_W), betas=(0.0, 0.0),
                                 eps=0.0, log_at=[0, 1, 2, 3])
    theta = np.concatenate([W.ravel(), E.ravel()])
    lam = np.concatenate([np.full(W.size, lam_W), np.full(E.size, lam_E)])
    for E_t, W_t in path:
        theta = (1 - lr * lam) * theta - lr * _raw_stationarity(theta, COUNTS, 0.0, B, 0.0, 4, 2)
        np.testing.assert_allclose(np.concatenate([W_t.ravel(), E_t.ravel()]), theta, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="lr"):
        mean_field_adamw_path(E, W, bigram_law(COUNTS), r=1.0, B=B, lr=3.0, lams=(lam_E, lam_W), betas=(0.0, 0.0),
                              eps=0.0, log_at=[0, 1])


def test_adamw_selection_without_moments_is_the_flows():
    """With β = (0, 0) the recursion is the explicit Euler scheme of the mean-field flow at step lr,
    so on a problem whose basin is not in doubt both selections give the same root (two
    integrators of the same flow: the recursion at lr 2e-3, the solver's own Euler escape then
    pseudo-transient continuation)."""
    counts = BigramTask.stochastic_zipf(8, 1.1, 0.7).counts
    init = _init(1, V=8, C=8, d=4, scale=0.1)
    a = factored_bigram_adamw_equilibrium(counts, 0.3, init=init, batch_size=8)
    b = factored_bigram_adamw_equilibrium(counts, 0.3, init=init, batch_size=8, select="adamw", lr=2e-3,
                                          steps=2000, betas=(0.0, 0.0))
    assert a.residual < 1e-9 and b.residual < 1e-9
    assert b.flow_time >= 2e-3 * 2000 and not np.array_equal(a.W, b.W)  # b took the recursion's path
    np.testing.assert_allclose(a.loss_per_token, b.loss_per_token, rtol=1e-7)


def test_continuation_lands_where_the_euler_flow_lands():
    """The default solver (short Euler selection phase, then pseudo-transient continuation) and an
    independent integration of the same mean-field flow (explicit Euler, half the step, run to
    the end and polished) select the same equilibrium from the same initialisation."""
    counts = BigramTask.stochastic_zipf(8, 1.1, 0.7).counts
    init = _init(1, V=8, C=8, d=4, scale=0.1)
    a = factored_bigram_adamw_equilibrium(counts, 0.3, init=init, batch_size=8)
    b = factored_bigram_adamw_equilibrium(counts, 0.3, init=init, batch_size=8, method="flow", h=0.01)
    assert a.residual < 1e-9 and b.residual < 1e-9
    np.testing.assert_allclose(a.W, b.W, atol=1e-7)
    np.testing.assert_allclose(a.loss_per_token, b.loss_per_token, rtol=1e-8)


def test_adamw_dispatch_returns_the_l2_result_type_with_a_certificate():
    init = _init(0)
    lams = np.array([0.5, 1.0])
    eq = factored_bigram_equilibrium(COUNTS, lam=lams, optimizer="adamw", init=init, batch_size=16)
    assert isinstance(eq, FactoredBigramEquilibrium) and eq.optimizer == "adamw"
    assert np.all(eq.residual < 1e-9) and np.all(np.isnan(eq.gap))
    for i, lam in enumerate(lams):
        # the per-token loss recomputed from the returned factors (logits of x = W @ E[:, x])
        Z = (eq.W[i] @ eq.E[i]).T
        lp = Z - np.log(np.exp(Z).sum(1, keepdims=True))
        J = COUNTS / COUNTS.sum()
        np.testing.assert_allclose(eq.loss_per_token[i], -(J * lp).sum(0) / J.sum(0), rtol=1e-12)
        np.testing.assert_allclose(eq.singular_values[i], np.linalg.svd(Z, compute_uv=False), atol=1e-12)
        one = factored_bigram_equilibrium(COUNTS, lam, lam, optimizer="adamw", init=init, batch_size=16)
        np.testing.assert_allclose(one.loss_per_token, eq.loss_per_token[i], rtol=1e-8)


@pytest.mark.parametrize("call, name", [
    (lambda f, u: f(COUNTS, lam=0.5, optimizer="adam", init=_init(0)), "optimizer"),
    (lambda f, u: f(COUNTS, lam=0.5, optimizer="adamw"), "init"),
    (lambda f, u: f(COUNTS, lam_w=0.5, lam_e=0.5, tied=True, optimizer="adamw", init=_init(0)[1]), "tied"),
    (lambda f, u: f(COUNTS, lam=0.5, tied=True, optimizer="adamw", init=_init(0)), "init"),
    (lambda f, u: f(COUNTS[:, :3], lam=0.5, tied=True, optimizer="adamw", init=_init(0)[1]), "square"),
    (lambda f, u: f(COUNTS, lam=0.5, tied=True, optimizer="adamw", init=_init(0)[1],
                    shared_second_moment=True), "tied"),
    (lambda f, u: f(COUNTS, lam=0.5, batch_size=8), "optimizer"),
    (lambda f, u: f(COUNTS, lam=0.5, optimizer="adamw", init=_init(0), betas=(0.9, 1.0)), "betas"),
    (lambda f, u: f(COUNTS, lam=0.5, optimizer="adamw", init=_init(0), method="rk4"), "method"),
    (lambda f, u: u([0.5, 0.5], 0.5, 0.5, bias=True, optimizer="adamw", init=_init(0, 2, 2)), "bias"),
    (lambda f, u: u([0.5, 0.5], 0.5, 0.5, optimizer="sgd"), "optimizer"),
])
def test_dispatch_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call(factored_bigram_equilibrium, ufm_equilibrium)


@pytest.mark.parametrize("seed", range(4))
def test_ufm_switch_like_features_certify_at_eps_1e_7(seed):
    """The UFM of the test above (d = 2 < K = 3, a feature inside its box) from several starts:
    certified at ε = 1e-6 and 1e-7, and the root an ε-continuation tracks: each class loss at 1e-7
    within 1 % of the one at 1e-6 (measured 0.6 %) when both runs reach the same root, checked
    against the raw stationarity enumerated pair by pair (no closed-form moments)."""
    pi = np.array([0.5, 0.3, 0.2])
    init = _init(seed, V=3, C=3)
    a = ufm_equilibrium(pi, 0.5, 0.5, optimizer="adamw", init=init, batch_size=8, eps=1e-6)
    b = ufm_equilibrium(pi, 0.5, 0.5, optimizer="adamw", init=init, batch_size=8, eps=1e-7)
    assert a.residual < 1e-9 and b.residual < 1e-9
    counts = np.diag(pi)
    for eq, eps in ((a, 1e-6), (b, 1e-7)):
        theta = np.concatenate([eq.W.ravel(), eq.H.T.ravel()])
        raw = _raw_stationarity(theta, counts, 0.5, 8, eps, 3, 2)
        assert np.abs(raw).max() < 1e-8
    if np.allclose(np.sign(a.W), np.sign(b.W)):
        np.testing.assert_allclose(b.loss_per_token, a.loss_per_token, rtol=0.01)


def test_uncertified_result_warns_and_keeps_its_residual():
    """One implicit step and no fallback cannot reach the root: the solver says so (UncertifiedWarning,
    naming λ and max|F|) and returns where it stopped, its residual equal to max|F| recomputed there."""
    from imbalance.theory.adamw_shared import UncertifiedWarning, bigram_law, stationarity

    with pytest.warns(UncertifiedWarning, match=r"not certified at 2 of 2 λ: max\|F\| = .* \(λ=0\.3\), .* \(λ=0\.5\)"):
        eq = factored_bigram_adamw_equilibrium(COUNTS, [0.3, 0.5], init=_init(0), batch_size=8, max_steps=1,
                                               fallback=False, t_select=0.0, lam_e=[0.3, 1e-3])
    assert eq.residual.min() >= 1e-9
    fW, fE = stationarity(eq.W[1], eq.E[1].T, bigram_law(COUNTS), 0.5, lam_e=1e-3, batch_size=8)
    assert np.abs(np.concatenate([fW.ravel(), fE.ravel()])).max() == pytest.approx(eq.residual[1], rel=1e-12)
