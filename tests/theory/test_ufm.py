"""T5: the UFM solved through the nuclear-norm program, checked against direct training."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imbalance.theory.ufm import minority_collapse_threshold, minority_cosine, two_group_pi, ufm_equilibrium
from imbalance.zipf import zipf_pmf
from tests.theory._direct import ufm_direct

# Agreement required: 1e-8 relative. The convex side is certified to rtol = 1e-11 (duality gap),
# the direct side stops when L-BFGS cannot decrease f in double precision (~1e-14 relative),
# so 1e-8 leaves three decades for the conditioning of the direct non-convex problem.
REL = 1e-8


def raw_objective(pi, lw, lh, W, H, b):
    """The UFM objective of T5 evaluated from its factors, without the convex reformulation."""
    Z = (W @ H).T + b
    m = Z.max(axis=1)
    ce = m + np.log(np.exp(Z - m[:, None]).sum(axis=1)) - np.diag(Z)
    return pi @ ce + 0.5 * lw * np.sum(W ** 2) + 0.5 * lh * np.sum(pi * np.sum(H ** 2, axis=0))


@pytest.mark.parametrize("K, bias, seeds", [(4, False, 3), (12, True, 3), (12, False, 2), (50, False, 1)])
def test_convex_optimum_equals_direct_training(K, bias, seeds):
    rng = np.random.default_rng(K + 100 * bias)
    pi = rng.dirichlet(np.full(K, 2.0)) * 0.8 + 0.2 * zipf_pmf(K, 1.0)  # imbalanced, min π ≳ 1e-3
    lw, lh = 10 ** rng.uniform(-3, -1, 2)
    eq = ufm_equilibrium(pi, lw, lh, bias=bias, rtol=1e-11)
    for seed in range(seeds):
        direct = ufm_direct(pi, lw, lh, bias=bias, seed=seed)[0]
        # the convex value is a certified lower bound: no factorisation can go below it
        assert direct >= eq.objective - eq.gap - 1e-15
        assert abs(direct - eq.objective) <= REL * eq.objective


def test_factorisation_attains_objective_and_fields_are_consistent():
    rng = np.random.default_rng(5)
    K = 7
    pi = rng.dirichlet(np.ones(K))
    lw, lh = 3e-3, 2e-2  # unequal decays: the balance constant c = (λ_H/λ_W)^{1/4} matters
    eq = ufm_equilibrium(pi, lw, lh, bias=True, rtol=1e-12)
    # the returned W, H reproduce the optimal value through the raw objective (variational identity)
    assert raw_objective(pi, lw, lh, eq.W, eq.H, eq.bias) == pytest.approx(eq.objective, rel=1e-10)
    Z = (eq.W @ eq.H).T + eq.bias
    np.testing.assert_allclose(Z, eq.logits, atol=1e-9)
    np.testing.assert_allclose(eq.classifier_norms, np.linalg.norm(eq.W, axis=1))
    assert eq.aggregate_loss == pytest.approx(pi @ eq.loss_per_token)
    assert eq.token_balanced_loss == pytest.approx(eq.loss_per_token.mean())
    # balanced factors: λ_W‖W‖² = λ_H Σ π_k‖h_k‖² (stationarity in the scale of the factors)
    assert lw * np.sum(eq.W ** 2) == pytest.approx(lh * np.sum(pi * eq.feature_norms ** 2), rel=1e-7)


def test_features_collapse_to_class_means():
    """Direct training with several samples per class (T5, step 1 of the proof): at the
    optimum the samples of a class share one feature, so the value equals the collapsed UFM."""
    import torch

    pi = np.array([0.5, 0.3, 0.2])
    n_per = np.array([5, 3, 2])  # 10 samples, each with its own free feature, weight 1/10
    lam = 1e-2
    K, n = 3, int(n_per.sum())
    y = np.repeat(np.arange(K), n_per)
    g = torch.Generator().manual_seed(0)
    W = (0.1 * torch.randn(K, K, generator=g, dtype=torch.float64)).requires_grad_()
    Hs = (0.1 * torch.randn(K, n, generator=g, dtype=torch.float64)).requires_grad_()
    yt = torch.tensor(y)
    opt = torch.optim.LBFGS([W, Hs], max_iter=5000, tolerance_grad=1e-14, tolerance_change=1e-16,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        Z = (W @ Hs).T
        val = (torch.logsumexp(Z, 1) - Z[torch.arange(n), yt]).mean() \
            + 0.5 * lam * (W ** 2).sum() + 0.5 * lam * (Hs ** 2).sum() / n
        val.backward()
        return val

    for _ in range(5):
        val = float(opt.step(closure).detach())
    eq = ufm_equilibrium(pi, lam, lam, rtol=1e-12)
    assert val == pytest.approx(eq.objective, rel=1e-8)
    H = Hs.detach().numpy()
    for k in range(K):
        spread = np.linalg.norm(H[:, y == k] - H[:, y == k].mean(axis=1, keepdims=True))
        assert spread <= 1e-5 * np.linalg.norm(H)


def test_lambda_path_leading_axis_and_direct_values():
    pi = np.array([0.6, 0.25, 0.1, 0.05])
    lams = np.array([3e-2, 1e-3, 1e-2])
    eq = ufm_equilibrium(pi, lams, 1e-2, rtol=1e-11)
    assert eq.logits.shape == (3, 4, 4) and eq.loss_per_token.shape == (3, 4)
    assert eq.classifier_cosine.shape == (3, 4, 4) and np.shape(eq.objective) == (3,)
    for i, lw in enumerate(lams):
        assert eq.objective[i] == pytest.approx(ufm_direct(pi, lw, 1e-2)[0], rel=REL)


@pytest.mark.parametrize("kwargs, name", [
    (dict(pi=[0.5, 0.6], lam_w=1.0, lam_h=1.0), "pi"),
    (dict(pi=[1.0, 0.0], lam_w=1.0, lam_h=1.0), "pi"),
    (dict(pi=[0.5, 0.5], lam_w=-1.0, lam_h=1.0), "lam_w"),
    (dict(pi=[0.5, 0.5], lam_w=1.0, lam_h=float("nan")), "lam_h"),
    (dict(pi=[0.5, 0.5], lam_w=[1.0, 2.0], lam_h=[1.0, 2.0, 3.0]), "lam_w"),
    (dict(pi=[0.5, 0.5], lam_w=1.0, lam_h=1.0, bias="yes"), "bias"),
    (dict(pi=[0.5, 0.5], lam_w=1e-6, lam_h=1e-6), "lam_w"),  # μ below 1e-5: not certifiable
    (dict(pi=[0.5, 0.5], lam_w=1.0, lam_h=1.0, rtol=float("inf")), "rtol"),
    (dict(pi=[1 - 1e-301, 1e-301], lam_w=1.0, lam_h=1.0), "pi"),
])
def test_bad_input_names_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ufm_equilibrium(**kwargs)


def test_relu_features_cost_more_and_are_orthogonal():
    """Dang et al. (2024): with H ≥ 0 the optimum is higher than the unconstrained one
    (the simplex-like unconstrained features sum to ~0, so they cannot be non-negative) and
    the class features become orthogonal. Direct constrained training, several inits."""
    pi = two_group_pi(2, 2, 4.0)
    lam = 5e-3
    eq = ufm_equilibrium(pi, lam, lam, rtol=1e-12)
    runs = sorted((ufm_direct(pi, lam, lam, relu=True, seed=s, scale=0.5) for s in range(4)),
                  key=lambda t: t[0])
    val, _, H, _ = runs[0]
    # two independent inits reach the same best value (some inits stop at a stationary point
    # with a dead class feature h_k = 0: a real pathology of the ReLU model, not used here)
    assert runs[1][0] == pytest.approx(val, rel=1e-9)
    assert (H >= 0).all()
    assert val > eq.objective * (1 + 1e-3)  # strictly worse, by far more than solver error
    nrm = np.linalg.norm(H, axis=0)
    assert (nrm > 0).all()
    cos = (H.T @ H) / np.outer(nrm, nrm)
    assert np.abs(cos[~np.eye(4, dtype=bool)]).max() <= 1e-6  # orthogonal class features


def test_minority_collapse_threshold_brackets_the_merge():
    ka = kb = 3
    lam = 3e-2
    R = minority_collapse_threshold(ka, kb, lam, lam)  # closed form (T8): (1/λ² − K_B)/K_A
    assert 1 < R < 1e8
    below = minority_cosine(ka, kb, R / 1.5, lam, lam)
    above = minority_cosine(ka, kb, R * 1.5, lam, lam)
    assert below.cosine < 1 - 1e-6 and above.cosine >= 1 - 1e-6
    # minority classifiers shrink as R grows; majority ones are longer
    assert above.minority_norm < below.minority_norm < below.majority_norm
    # direct training above the threshold reproduces the merge (independent of the convex solver)
    pi = two_group_pi(ka, kb, R * 1.5)
    _, W, _, _ = ufm_direct(pi, lam, lam, seed=1)
    w1, w2 = W[ka], W[ka + 1]
    assert w1 @ w2 / np.linalg.norm(w1) / np.linalg.norm(w2) >= 1 - 1e-5


def test_minority_cosine_lambda_leading_and_merges_past_closed_form_threshold():
    """λ array → every field is (L, *ratio.shape), each λ row equal to the scalar-λ call; the
    minority pair is merged exactly where R exceeds the closed-form T8 threshold of that λ."""
    ka, kb = 2, 3
    lams = np.array([3e-2, 1e-1])
    thr = np.array([minority_collapse_threshold(ka, kb, lam, lam) for lam in lams])  # closed form
    R = np.array([[thr[1] / 1.5, thr[1] * 1.5], [thr[0] / 1.5, thr[0] * 1.5]])  # (2, 2), ratios >= 1
    assert (R >= 1).all()
    mc = minority_cosine(ka, kb, R, lams, lams, rtol=1e-11)
    assert mc.cosine.shape == mc.minority_norm.shape == mc.majority_norm.shape == (2, 2, 2)
    merged = 1 - mc.cosine <= 1e-6
    np.testing.assert_array_equal(merged, R[None] > thr[:, None, None])
    for i, lam in enumerate(lams):
        one = minority_cosine(ka, kb, R, lam, lam, rtol=1e-11)
        assert one.cosine.shape == R.shape and isinstance(one.lam_w, float)
        # both certified to a relative gap of 1e-11: norms agree far inside 1e-5 (the square
        # root of the gap bounds how far a strongly convex optimum's argument can move)
        np.testing.assert_allclose(one.minority_norm, mc.minority_norm[i], rtol=1e-5)
        np.testing.assert_allclose(one.majority_norm, mc.majority_norm[i], rtol=1e-5)
    scalar = minority_cosine(ka, kb, float(R[0, 0]), 0.1, 0.1)
    assert isinstance(scalar.cosine, float) and isinstance(scalar.ratio, float)


@pytest.mark.parametrize("kwargs, name", [
    (dict(k_major=2, k_minor=1, ratio=2.0, lam_w=0.1, lam_h=0.1), "k_minor"),
    (dict(k_major=2, k_minor=2, ratio=0.5, lam_w=0.1, lam_h=0.1), "ratio"),
    (dict(k_major=2, k_minor=2, ratio=2.0, lam_w=[0.1, 0.2], lam_h=[0.1, 0.2, 0.3]), "lam_w"),
    (dict(k_major=2, k_minor=2, ratio=2.0, lam_w=0.1, lam_h=[[0.1]]), "lam_h"),
])
def test_minority_cosine_bad_input_names_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        minority_cosine(**kwargs)


# ---------------------------------------------------------------- the paper's proposition
# Property tests over generated π and λ. A computed per-token loss differs from the optimum's by at
# most a bound derived, per example, from the certified duality gap (see ``loss_error_bound``), so
# an ordering is asserted only up to the sum of the two tokens' bounds.


def loss_error_bound(Z, pi, gap, objective) -> np.ndarray:
    """Per class k, a bound on |ℓ_k(returned Z) − ℓ_k(Z*)| from the certified ``gap``, for
    F(Z) = Σ_k π_k CE(z_k, k) + a convex penalty (no bias); ``Z`` (K × K) the returned logits.

    1. F = f + g with g (the nuclear penalty) convex and −∇f(Z*) ∈ ∂g(Z*), so for any Z
       gap ≥ F(Z) − F* ≥ D_f(Z, Z*) = ∫₀¹ (1 − t) Δᵀ∇²f(Z* + tΔ)Δ dt, Δ = Z − Z*.
    2. ∇²f is block-diagonal, H_k = π_k (diag p_k − p_k p_kᵀ). If every row of Δ has range ≤ s,
       softmax probabilities along the segment are within e^{±s} of the returned ones and a
       variance under a measure with density ratio ≥ e^{−s} is ≥ e^{−s} times the original, so
       Σ_k Δ_kᵀ H_k Δ_k ≤ E := 2 e^{s} gap (H at the returned Z).
    3. ℓ_k is shift-invariant with gradient p_k − e_k, and (p − e_k)ᵀ(diag p − ppᵀ)⁺(p − e_k) = 1/p_kk − 1
       (the Mahalanobis length of a one-hot vector); by Cauchy–Schwarz in the metric H_k(t) along
       the segment, |Δℓ_k| ≤ e^{s} √((e^{s}/p_kk − 1) E / π_k), p_kk the returned own-class probability.
    4. The premise s: the smallest eigenvalue of diag p − ppᵀ on 𝟙⊥ is ≥ min_j p_j (interlacing),
       so range(Δ_k) ≤ 2‖PΔ_k‖₂ ≤ 2√(E / (π_k min_j p_kj)); this is checked to be ≤ s = 1/2. It is
       a self-consistency check of the local premise, not a proof that no far point has this gap.
    The gap itself is a rounded difference: 1e-13·|objective| is added (the solver's RTOL_MIN), and
    1e-12 for the rounding of the computed losses (log-sum-exp of ≤ 6 logits of order 10).
    """
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    s = 0.5
    E = 2 * np.exp(s) * (max(float(gap), 0.0) + 1e-13 * abs(float(objective)))
    reach = 2 * np.sqrt(E / (pi * P.min(axis=1)))
    assert (reach <= s).all(), reach  # the premise of step 2
    return np.exp(s) * np.sqrt((np.exp(s) / np.diag(P) - 1) * E / pi) + 1e-12


def ufm_loss_error_bound(eq, i=None) -> np.ndarray:
    """:func:`loss_error_bound` of a UFM solve (of its i-th λ on a path)."""
    if i is None:
        return loss_error_bound(eq.logits, eq.pi, eq.gap, eq.objective)
    return loss_error_bound(eq.logits[i], eq.pi, eq.gap[i], eq.objective[i])


pis = st.lists(st.floats(0.2, 5.0), min_size=3, max_size=6).map(lambda w: np.array(w) / np.sum(w))
lams = st.floats(1e-3, 3e-2)


@given(pi=pis, lam=lams)
def test_loss_decreases_with_frequency(pi, lam):
    eq = ufm_equilibrium(pi, lam, lam, rtol=1e-11)
    order = np.argsort(pi)
    loss, tol = eq.loss_per_token[order], ufm_loss_error_bound(eq)[order]
    strictly = np.diff(pi[order]) > 1e-9
    assert (np.diff(loss)[strictly] <= (tol[1:] + tol[:-1])[strictly]).all()


@given(pi=pis, lam=lams)
def test_loss_increases_with_lambda_faster_for_rarer(pi, lam):
    eq = ufm_equilibrium(pi, [lam, 1.5 * lam], [lam, 1.5 * lam], rtol=1e-11)
    inc = eq.loss_per_token[1] - eq.loss_per_token[0]
    tol = ufm_loss_error_bound(eq, 0) + ufm_loss_error_bound(eq, 1)  # bound on the error of inc
    assert (inc >= -tol).all()
    order = np.argsort(pi)
    strictly = np.diff(pi[order]) > 1e-9
    assert (np.diff(inc[order])[strictly] <= (tol[order][1:] + tol[order][:-1])[strictly]).all()


def test_counterexample_rarer_not_faster_once_rare_classes_saturate():
    """Where claim 3 fails (proofs/T5, "Regime"): once μ = √(λ_Wλ_H) approaches the value
    ‖∇f(0)‖₂ at which Z = 0, the rare classes are already near log K and their loss can
    only rise by what is left, while frequent classes catch up. Measured: π = (.5,.3,.15,.05),
    λ 0.3 → 0.5 raises the rarest loss by ~0.04 and the most frequent one by ~0.44."""
    pi = np.array([0.5, 0.3, 0.15, 0.05])
    eq = ufm_equilibrium(pi, [0.3, 0.5], [0.3, 0.5], rtol=1e-11)
    inc = eq.loss_per_token[1] - eq.loss_per_token[0]
    assert (inc >= -(ufm_loss_error_bound(eq, 0) + ufm_loss_error_bound(eq, 1))).all()  # claim 2 still holds
    assert inc[3] < inc[0] - 0.1  # claim 3 fails by far more than any solver error
    assert (eq.loss_per_token[1] <= np.log(4) + 1e-9).all()


def test_collapse_threshold_falls_with_weight_decay():
    """More decay, earlier merge: R*(λ) = (1/λ⁴ − K_B)/K_A decreases (T8)."""
    r = [minority_collapse_threshold(2, 2, lam, lam) for lam in (0.03, 0.1)]
    assert 1 < r[1] < r[0] < 1e8
