"""T5 (UFM) and T7 (factored bigram, untied and tied): the factored model's trained value
equals the convex nuclear-norm (trace) program's value.

The trained value (L-BFGS on the factored objective, width ≥ min(V, n)) is an upper bound
on the convex minimum; the duality certificate in _nuclear_ref gives a lower bound. They must
meet. Tolerance: after L-BFGS + Newton polish on ∇F the certified gaps are at float64 rounding
of F (≈ 2e-15 relative observed; L-BFGS alone left up to 1.6e-7 on rare-class inputs, whose
weakly curved directions stall its line search). The Newton step uses a finite-difference
Hessian with O(h²) = 1e-12 error; 1e-10 relative allows a condition number of 100 on top.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from imbalance.testing import bigram_counts, frequency_vectors, weight_decays

from . import _nuclear_ref as ref
from ._tol import EPS

REL = 1e-10


def _ufm_problem(pi):
    K = pi.size
    return np.eye(K), pi  # class k's feature must predict k; weights π_k


@given(frequency_vectors(max_size=5, max_ratio=1e3), weight_decays(1e-3, 1.0), weight_decays(1e-3, 1.0))
def test_ufm_trained_value_equals_convex_value(pi, lam_w, lam_h):
    Q, w = _ufm_problem(pi)
    K = pi.size
    mu = np.sqrt(lam_w * lam_h)
    trained, Z = ref.fit_factored(Q, w, lam_w, lam_h, d_weights=pi, width=K)
    F, _ = ref.convex_value_and_gap(Z, Q, w, mu, d_weights=pi)
    assert trained >= F - 64 * EPS * F  # variational inequality: factored ≥ convex at the same Z
    lower = ref.certified_lower_bound(Z, Q, w, mu, pi)  # ≤ convex minimum ≤ F
    assert trained - lower <= REL * F, (trained - lower) / F  # the factored value attains it
    # an independent convex solve (proximal gradient) reaches the same value
    # an independent convex solve (proximal gradient from 0) is consistent with both bounds:
    # its value is ≥ the minimum ≥ trained − REL·F, and its own certificate is ≤ trained
    Zc = ref.fista_nuclear(Q, w, mu, pi)
    Fc, gapc = ref.convex_value_and_gap(Zc, Q, w, mu, pi)
    assert Fc >= trained - REL * F - 64 * EPS * F
    assert Fc - gapc <= trained + 64 * EPS * F


@given(bigram_counts(max_contexts=5, max_vocab=5, sparse=False), weight_decays(1e-3, 1.0), weight_decays(1e-3, 1.0))
def test_factored_bigram_value_equals_unweighted_nuclear_program(counts, lam_w, lam_e):
    C = np.asarray(counts, dtype=np.float64)
    Q = (C / C.sum(1, keepdims=True)).T    # V × n, columns q(·|x)
    w = C.sum(1) / C.sum()                 # P(x)
    V, n = Q.shape
    mu = np.sqrt(lam_w * lam_e)
    ones = np.ones(n)  # the embedding penalty is unweighted: D = I
    trained, Z = ref.fit_factored(Q, w, lam_w, lam_e, d_weights=ones, width=min(V, n) + 1)
    F, _ = ref.convex_value_and_gap(Z, Q, w, mu, ones)
    assert trained >= F - 64 * EPS * F
    lower = ref.certified_lower_bound(Z, Q, w, mu, ones)
    assert trained - lower <= REL * F, (trained - lower) / F


@given(bigram_counts(max_vocab=5, sparse=False, square=True), weight_decays(1e-3, 2.0))
def test_tied_factored_value_equals_trace_program(counts, lam):
    C = np.asarray(counts, dtype=np.float64)
    Q = (C / C.sum(1, keepdims=True)).T
    w = C.sum(1) / C.sum()
    V = Q.shape[0]
    lam_t = lam / 2  # one matrix E decayed once: (λ/2)‖E‖² = (λ/2) tr EᵀE
    trained, Z = ref.fit_tied(Q, w, lam, width=V + 1)
    # Z = EᵀE ⪰ 0 up to rounding of ‖E‖² (5e-324: E can underflow when the optimum is Z = 0)
    assert np.linalg.eigvalsh((Z + Z.T) / 2)[0] >= -64 * EPS * np.trace(Z) - 5e-323
    F, _ = ref.tied_value_and_gap(Z, Q, w, lam_t)
    assert abs(trained - F) <= 64 * EPS * F  # the tied penalty is exactly (λ/2) tr Z
    lower = ref.certified_lower_bound_tied(Z, Q, w, lam_t)
    assert trained - lower <= REL * F, (trained - lower) / F


@given(st.integers(2, 5), st.integers(2, 5), st.integers(2, 6), weight_decays(1e-3, 10.0), weight_decays(1e-3, 10.0),
       frequency_vectors(max_size=5), st.randoms(use_true_random=False))
def test_variational_inequality_and_balanced_equality(V, n, k, lam_w, lam_h, pi_any, rnd):
    # for every factorisation: (λ_W/2)‖W‖² + (λ_H/2)‖H D^{1/2}‖² ≥ √(λ_W λ_H)‖W H D^{1/2}‖_*,
    # with equality at W = U Σ^{1/2} c, H D^{1/2} = Σ^{1/2} Vᵀ/c, c = (λ_H/λ_W)^{1/4}
    d = np.resize(pi_any, n) + 1e-3
    rng = np.random.default_rng(rnd.randint(0, 2**32 - 1))
    W, H = rng.standard_normal((V, k)), rng.standard_normal((k, n))
    s = np.sqrt(d)
    mu = np.sqrt(lam_w * lam_h)
    lhs = lam_w / 2 * (W**2).sum() + lam_h / 2 * ((H * s) ** 2).sum()
    nuc = ref.nuclear(W @ H * s)
    assert lhs >= mu * nuc * (1 - 64 * EPS)
    U, sv, Vt = np.linalg.svd(W @ H * s, full_matrices=False)
    c = (lam_h / lam_w) ** 0.25
    Wb, HDb = U * np.sqrt(sv) * c, (np.sqrt(sv)[:, None] * Vt) / c
    np.testing.assert_allclose(Wb @ HDb, W @ H * s, rtol=0, atol=64 * EPS * np.abs(W @ H * s).max() * k)
    bal = lam_w / 2 * (Wb**2).sum() + lam_h / 2 * (HDb**2).sum()
    assert abs(bal - mu * nuc) <= 64 * EPS * mu * nuc
