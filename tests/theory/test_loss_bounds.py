"""T9: per-token loss ceilings from dual feasibility never fall below the optimal losses.

The bound is a theorem about the exact optimum, where ‖∇_Y f‖₂ ≤ μ. A certified solve is only
near it, so each check recomputes ρ = ‖∇_Y f‖₂/μ from the returned logits with numpy (independent
of the solver's Lanczos/Cholesky bound) and evaluates the ceiling at μ·max(1, ρ): the same
argument then holds *exactly* for the returned iterate, with no tolerance but rounding (1e-12).
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from imbalance.testing.strategies import bigram_counts, frequency_vectors, weight_decays
from imbalance.theory import factored_bigram_equilibrium, ufm_equilibrium
from imbalance.theory.loss_bounds import factored_column_bound, factored_loss_ceiling, ufm_loss_ceiling


def _softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


@given(frequency_vectors(min_size=2, max_size=8, max_ratio=1e3), weight_decays(1e-3, 1.0), weight_decays(1e-3, 1.0),
       st.booleans())
def test_ufm_ceiling_holds(pi, lam_w, lam_h, bias):
    eq = ufm_equilibrium(pi, lam_w, lam_h, bias=bias, rtol=1e-10)
    mu = np.sqrt(lam_w * lam_h)
    G = np.sqrt(pi)[:, None] * (_softmax(eq.logits) - np.eye(pi.size))  # (K, K) ∇_Y f, rows √π_k(p_k − e_k)
    rho = np.linalg.norm(G, 2) / mu
    assert rho <= 1.01  # near the optimum (a certified gap does not bound ρ − 1 tightly)
    ceiling = ufm_loss_ceiling(pi, lam_w * max(1.0, rho) ** 2, lam_h).ceiling
    assert (eq.loss_per_token <= ceiling + 1e-12).all(), (eq.loss_per_token, ceiling)


@given(bigram_counts(max_contexts=6, max_vocab=6), weight_decays(1e-4, 0.3), weight_decays(1e-4, 0.3))
def test_factored_ceiling_holds(counts, lam_w, lam_e):
    C = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts, dtype=float)
    eq = factored_bigram_equilibrium(C, lam_w, lam_e, rtol=1e-10)
    mu = np.sqrt(lam_w * lam_e)
    Z = (eq.W @ eq.E).T  # (n, V) logits after each context
    Px = C.sum(1) / C.sum()
    Q = np.divide(C, C.sum(1, keepdims=True), out=np.zeros_like(C, dtype=float), where=C.sum(1, keepdims=True) > 0)
    G = Px[:, None] * (_softmax(Z) - Q)  # (n, V); unseen contexts have weight 0
    rho = np.linalg.norm(G, 2) / mu
    assert rho <= 1.01  # measured up to 1 + 1.7e-5 (counts [[1, 54]], λ_W = 3.4e-4, λ_E = 1.0e-4)
    ceiling = factored_loss_ceiling(C, lam_w * max(1.0, rho) ** 2, lam_e).ceiling
    seen = C.sum(0) > 0
    assert (eq.loss_per_token[seen] <= ceiling[seen] + 1e-12).all()
    assert np.isnan(ceiling[~seen]).all()


@given(bigram_counts(max_contexts=8, max_vocab=6), weight_decays(1e-4, 0.3), weight_decays(1e-4, 0.3))
def test_factored_column_bound_holds(counts, lam_w, lam_e):
    """Column version: every column of G = D(P − Q), recomputed from the solver's W, E with numpy,
    has norm ≤ ‖G‖₂; the marginal deficit and the column ceiling (at μ·max(1, ρ)) hold on the
    returned iterate, and the column ceiling is never above the row ceiling (it uses the row
    bound and adds Cauchy–Schwarz on the column)."""
    C = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts, dtype=float)
    eq = factored_bigram_equilibrium(C, lam_w, lam_e, rtol=1e-10)
    mu = np.sqrt(lam_w * lam_e)
    Z = (eq.W @ eq.E).T  # (n, V) logits after each context
    Px = C.sum(1) / C.sum()
    Q = np.divide(C, C.sum(1, keepdims=True), out=np.zeros_like(C, dtype=float), where=C.sum(1, keepdims=True) > 0)
    P = _softmax(Z)  # (n, V)
    G = Px[:, None] * (P - Q)  # (n, V)
    rho = max(1.0, np.linalg.norm(G, 2) / mu)
    assert rho <= 1.01
    assert (np.linalg.norm(G, axis=0) <= mu * rho * (1 + 1e-12)).all()
    b = factored_column_bound(C, lam_w * rho**2, lam_e)
    seen = C.sum(0) > 0
    deficit = C.sum(0) / C.sum() - Px @ P  # (V,) true minus predicted marginal
    assert (deficit[seen] <= b.mass_deficit[seen] + 1e-12).all(), (deficit, b.mass_deficit)
    assert (eq.loss_per_token[seen] <= b.ceiling[seen] + 1e-12).all(), (eq.loss_per_token, b.ceiling)
    row = factored_loss_ceiling(C, lam_w * rho**2, lam_e).ceiling
    assert (b.ceiling[seen] <= row[seen] * (1 + 1e-12)).all()
    assert np.isnan(b.ceiling[~seen]).all() and np.isnan(b.mass_deficit[~seen]).all()


def test_column_ceiling_is_below_the_row_one_for_a_token_with_many_contexts():
    """One target v after 20 equally frequent contexts: the row ceiling lets every context lose
    d_x at once, the column constraint Σ P(x)²δ_x² ≤ μ² does not, so it is strictly lower; with a
    single context (copy family) the two coincide."""
    C = np.zeros((20, 3))
    C[:, 0], C[:, 1] = 90, 10  # q(v=0|x) = 0.9 in every context, P(x) = 1/20
    col = factored_column_bound(C, 0.02, 0.02)
    row = factored_loss_ceiling(C, 0.02, 0.02)
    assert np.isfinite(row.ceiling[0]) and col.ceiling[0] < row.ceiling[0] - 1e-3
    np.testing.assert_allclose(col.mass_deficit[:2], 0.02 * np.sqrt(20), rtol=1e-15)  # token 2: never a target
    assert np.isnan(col.mass_deficit[2])
    pi = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(factored_column_bound(np.diag(pi * 1000), 0.01, 0.01).ceiling,
                               factored_loss_ceiling(np.diag(pi * 1000), 0.01, 0.01).ceiling, rtol=1e-13)


def test_column_bound_vectorised_over_lambda():
    C = np.array([[5.0, 1, 0], [2, 7, 1], [0, 3, 9]])
    lams = np.array([1e-3, 1e-2, 1e-1])
    out = factored_column_bound(C, lams, lams)
    assert out.ceiling.shape == (3, 3) and out.mass_deficit.shape == (3, 3) and out.mu.shape == (3,)
    for i, lam in enumerate(lams):
        np.testing.assert_array_equal(out.ceiling[i], factored_column_bound(C, lam, lam).ceiling)


def test_copy_family_ceiling_is_the_ufm_one_with_pi_for_sqrt_pi():
    """Copy family (context v → token v): floor 1 − (μ/π_v)√((V−1)/V), the UFM's with √π → π."""
    pi = np.array([0.5, 0.3, 0.2])
    c = factored_loss_ceiling(np.diag(pi * 1000), 0.01, 0.01).ceiling
    np.testing.assert_allclose(c, -np.log(1 - 0.01 / pi * np.sqrt(2 / 3)), rtol=1e-13)
    u = ufm_loss_ceiling(pi, 0.01, 0.01).ceiling
    np.testing.assert_allclose(u, -np.log(1 - 0.01 * np.sqrt(2 / (3 * pi))), rtol=1e-13)


def test_vectorised_over_lambda_and_vacuous_for_rare_classes():
    pi = np.array([0.99, 0.009, 0.001])
    lams = np.array([1e-3, 1e-2, 1e-1])
    out = ufm_loss_ceiling(pi, lams, lams)
    assert out.ceiling.shape == (3, 3) and out.mu.shape == (3,)
    for i, lam in enumerate(lams):
        np.testing.assert_array_equal(out.ceiling[i], ufm_loss_ceiling(pi, lam, lam).ceiling)
    assert np.isinf(out.ceiling[2, 2]) and np.isfinite(out.ceiling[0]).all()  # μ√(2/(3·0.001)) > 1 at λ = 0.1


@pytest.mark.parametrize("call, name", [
    (lambda: ufm_loss_ceiling([0.5, 0.5], 0.0, 0.1), "lam_w"),
    (lambda: ufm_loss_ceiling([1.0, 0.0], 0.1, 0.1), "pi"),
    (lambda: factored_loss_ceiling([[1, -1]], 0.1, 0.1), "counts"),
    (lambda: factored_loss_ceiling([[1, 1]], 0.1, [0.1, np.nan]), "lam_e"),
    (lambda: factored_column_bound([[1, -1]], 0.1, 0.1), "counts"),
    (lambda: factored_column_bound([[1, 1]], -0.1, 0.1), "lam_w"),
])
def test_bad_input_names_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
