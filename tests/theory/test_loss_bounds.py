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
from imbalance.theory.loss_bounds import factored_loss_ceiling, ufm_loss_ceiling


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
])
def test_bad_input_names_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
