"""The nuclear-norm core: the variational identity and the duality certificate."""

import numpy as np
import pytest
import scipy.sparse as sp

from imbalance.theory.nuclear import solve_nuclear_softmax
from tests.theory._direct import bigram_direct


def test_variational_identity_lower_bound_and_attainment():
    """min_{WH=Z} (a/2)‖W‖² + (b/2)‖H D^{1/2}‖² = √(ab)‖Z D^{1/2}‖_* (proofs/T5, Step 2):
    random factorisations never go below, the balanced one attains it."""
    rng = np.random.default_rng(0)
    K, d, a, b = 6, 9, 0.3, 2.0
    pi = rng.dirichlet(np.ones(K))
    Dh = np.diag(np.sqrt(pi))
    W, H = rng.standard_normal((K, d)), rng.standard_normal((d, K))
    Z = W @ H
    bound = np.sqrt(a * b) * np.linalg.svd(Z @ Dh, compute_uv=False).sum()
    for _ in range(20):  # other factorisations of the same Z: W T, T⁻¹ H
        T = rng.standard_normal((d, d)) + 3 * np.eye(d)
        W2, H2 = W @ T, np.linalg.solve(T, H)
        assert 0.5 * a * np.sum(W2 ** 2) + 0.5 * b * np.sum((H2 @ Dh) ** 2) >= bound * (1 - 1e-12)
    U, S, Vt = np.linalg.svd(Z @ Dh)
    c = (b / a) ** 0.25
    Wb, Hb = c * U * np.sqrt(S), (np.sqrt(S)[:, None] * Vt / c) @ np.diag(1 / np.sqrt(pi))
    np.testing.assert_allclose(Wb @ Hb, Z, atol=1e-10)
    assert 0.5 * a * np.sum(Wb ** 2) + 0.5 * b * np.sum((Hb @ Dh) ** 2) == pytest.approx(bound, rel=1e-12)


@pytest.mark.parametrize("psd", [False, True])
def test_gap_bounds_distance_to_direct_optimum(psd):
    """Weak duality: the dual value of a *loose* solve is below the optimum that direct
    training finds, and the primal is above it, so the gap really brackets the optimum."""
    rng = np.random.default_rng(1)
    C = rng.poisson(3.0, size=(12, 12)).astype(float)
    lam = 4e-3
    # untied: λ‖Z‖_*; tied, one matrix decayed by 2λ: (2λ/2) tr Z = λ tr Z
    direct = (bigram_direct(C, None, 2 * lam, tied=True, seed=0) if psd else bigram_direct(C, lam, lam, seed=0))[0]
    mu = lam
    sol = solve_nuclear_softmax(sp.csr_matrix(C / C.sum()), mu, psd=psd, rtol=1e-3)
    assert sol.dual_value <= direct + 1e-14
    assert sol.objective >= direct - 1e-14
    assert sol.gap >= 0


def test_zero_solution_when_mu_exceeds_gradient_norm():
    """Z = 0 is optimal iff ‖∇f(0)‖₂ ≤ μ (proofs/T5, Step 5); then every row predicts uniform."""
    rng = np.random.default_rng(2)
    M = rng.dirichlet(np.ones(5), size=4) / 4  # rows P(x) q_x, P uniform
    G0 = M.sum(1, keepdims=True) / 5 - M
    mu = 1.01 * np.linalg.norm(G0, 2)
    sol = solve_nuclear_softmax(M, mu)
    assert np.abs(sol.logits).max() == 0 and sol.gap <= 1e-15
    sol = solve_nuclear_softmax(M, 0.9 * np.linalg.norm(G0, 2))
    assert np.abs(sol.logits).max() > 0


def test_same_bits_under_a_slow_clock(monkeypatch):
    """The schedule of certificates and rank growth is an operation count, so a machine 1000×
    slower (every clock read advances 100 s) gives the same iterates, bit for bit."""
    import time

    rng = np.random.default_rng(5)
    M = sp.csr_matrix(rng.poisson(rng.gamma(0.5, 4.0, size=(30, 30))).astype(float))
    M = M / M.sum()
    ref = [solve_nuclear_softmax(M, 2e-3, psd=psd, rtol=1e-10) for psd in (False, True)]
    clock = [0.0]

    def slow():
        clock[0] += 100.0
        return clock[0]

    for name in ("perf_counter", "monotonic", "time", "process_time"):
        monkeypatch.setattr(time, name, slow)
    for psd, r in zip((False, True), ref):
        s = solve_nuclear_softmax(M, 2e-3, psd=psd, rtol=1e-10)
        assert s.n_iter == r.n_iter and s.singular_values.size == r.singular_values.size
        assert np.array_equal(s.logits, r.logits) and s.gap == r.gap


@pytest.mark.parametrize("kwargs, name", [
    (dict(rtol=-1e-9), "rtol"), (dict(rtol=0.0), "rtol"), (dict(rtol=float("nan")), "rtol"),
    (dict(mu=0.0), "mu"), (dict(max_iter=0), "max_iter"), (dict(check_every=0), "check_every"),
])
def test_bad_solver_settings_name_parameter(kwargs, name):
    args = dict(target=np.eye(3) / 3, mu=0.1) | kwargs
    with pytest.raises(ValueError, match=name):
        solve_nuclear_softmax(**args)


def test_a_barely_regularised_row_is_refused_by_name():
    """A row scale that leaves one row almost unpenalised (μ s_x/√w_x = 7.5e-13, found by the
    fuzz suite) is refused instead of running 20,000 uncertified steps; a row scaled by 1e-2
    (weight 1.5e-3) is certified, and its objective is the raw objective recomputed here."""
    C = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 2.0], [1.0, 0.0, 0.0]]) / 9
    with pytest.raises(ValueError, match=r"row_scale\[0\]"):
        solve_nuclear_softmax(C, np.float32(0.5), row_scale=np.array([1e-12, 0.2339, 1e-2], dtype=np.float32))
    s = np.array([0.3, 1e-2, 1.0])
    sol = solve_nuclear_softmax(C, 0.1, row_scale=s, rtol=1e-9)
    Z = sol.logits
    w = C.sum(1)
    lse = Z.max(1) + np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1))
    ce = (C * (lse[:, None] - Z)).sum()  # Σ_x w_x CE(q_x, z_x)
    primal = ce + 0.1 * np.linalg.svd(s[:, None] * Z, compute_uv=False).sum()
    assert w.min() > 0 and sol.rel_gap <= 1e-9
    # the reported objective is this primal value up to rounding of sums of a few terms
    assert primal == pytest.approx(sol.objective, rel=1e-12)


def test_bias_certificate_is_a_lower_bound_on_skewed_classes():
    """With a bias the dual point must satisfy Σ_x s_x U_x = 0; an earlier certificate ignored
    the bias gradient's share and reported a *negative* gap (−7.6e-8 relative on this problem:
    one class of mass 0.99994, two of 3.2e-5, λ_W = 1e-2, λ_H = 10^-2.5). The corrected dual
    value is below the optimum that direct training of (W, H, b) finds, at any tolerance."""
    from imbalance.theory.ufm import two_group_pi
    from tests.theory._direct import ufm_direct

    pi = two_group_pi(1, 2, 0.99 * (1 / (1e-2 * 10 ** -2.5) - 2))
    lw, lh = 1e-2, 10 ** -2.5
    direct = ufm_direct(pi, lw, lh, bias=True, seed=0)[0]
    for rtol in (1e-4, 1e-7):
        sol = solve_nuclear_softmax(sp.diags(pi).tocsr(), np.sqrt(lw * lh), row_scale=np.sqrt(pi), bias=True,
                                    rtol=rtol)
        assert sol.gap >= 0
        assert sol.dual_value <= direct + 1e-15 * direct  # direct training is feasible: ≥ the optimum


def test_clustered_top_of_a_full_rank_optimum():
    """Uniform π, K = 6, λ_W = 1, λ_H = 0.0372: at the optimum every singular value of ∇f equals
    μ, and LAPACK's one-eigenvalue driver failed ("Internal Error") on that cluster."""
    from imbalance.theory import ufm_equilibrium

    eq = ufm_equilibrium(np.full(6, 1 / 6), 1.0, 0.037192483224564685, rtol=1e-10)
    assert eq.rel_gap <= 1e-10


@pytest.mark.parametrize("pi, lam_w, lam_h", [
    ([0.999001, 0.000999], 0.0024787521766663585, 0.0011708796207911744),
    (None, 1e-2, 10 ** -2.5),
])
def test_nearly_certain_classes_certify_to_tight_tolerances(pi, lam_w, lam_h):
    """A class of mass ≈ 1 has loss ≈ 1e-4: f computed as Σ w·lse − Σ M·z cancelled two sums of
    size ~|z| and L-BFGS stalled at relative gaps 5e-9 / 2e-7 (> rtol). f = Σ M (m − z) + Σ w log tot
    has no such cancellation; the solve is certified and its dual value is below direct training."""
    from imbalance.theory.ufm import two_group_pi, ufm_equilibrium
    from tests.theory._direct import ufm_direct

    pi = np.asarray(pi) if pi is not None else two_group_pi(1, 2, 0.99 * (1 / (lam_w * lam_h) - 2))
    eq = ufm_equilibrium(pi, lam_w, lam_h, bias=True, rtol=1e-11)
    assert eq.rel_gap <= 1e-11
    direct = ufm_direct(pi, lam_w, lam_h, bias=True, seed=0)[0]
    assert eq.objective - eq.gap <= direct + 1e-15
