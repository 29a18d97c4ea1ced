"""T6b (imbalance.theory.fair_decay) against independent computations.

* the raw mean-field stationarity of every weight, with gradient moments summed from the binomial
  law of the context count (scipy.stats), solved by a generic root finder on all K² weights;
* T3's own solver (``margin_law``, ``bigram_equilibrium``) where a variant reduces to it;
* properties that follow from the statement (fair scale, orderings, ε limits), by hypothesis.
"""

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

from imbalance.formulas import adamw_rho
from imbalance.testing import frequency_vectors, weight_decays
from imbalance.theory import margin_law
from imbalance.theory.fair_decay import (
    LAZY,
    fair_bigram_equilibrium,
    fair_margin_law,
    fairness_index,
    loss_margins_from_logits,
    presence_probability,
    row_decay_scale,
)
from imbalance.zipf import zipf_pmf

batch_sizes = st.integers(1, 512)


def _count_moments(P, B):
    """E[N], E[N²], P(N ≥ 1) of N ~ Binomial(B, P) by direct summation of the pmf."""
    n = np.arange(B + 1)
    pmf = scipy.stats.binom.pmf(n[:, None], B, P[None, :])                  # (B+1, K)
    return (n[:, None] * pmf).sum(0), (n[:, None] ** 2 * pmf).sum(0), 1 - pmf[0]


def _raw_residual(w, P, B, lam, c, r, eps, lazy, coupled):
    """λ_eff w + E[g]/(√E[g²] + ε) per weight, moments from the binomial law (no closed forms)."""
    K = P.size
    W = w.reshape(K, K)
    z = r * W
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = p - np.eye(K)                                                       # (K, K) p − δ
    EN, EN2, pres = _count_moments(P, B)
    Eg = r * d * (EN / B)[:, None]
    Eg2 = r * r * d ** 2 * (EN2 / B ** 2)[:, None]
    decay = lam * c * (pres if lazy != "none" else 1.0)
    if lazy == "moments":  # per present step: conditional moments, decay λ c
        out = (lam * c)[:, None] * W + (Eg / pres[:, None]) / (np.sqrt(Eg2 / pres[:, None]) + eps)
        return out.ravel()
    if coupled:
        Eg2 = np.broadcast_to(Eg2.mean(0), Eg2.shape)
    return (decay[:, None] * W + Eg / (np.sqrt(Eg2) + eps)).ravel()


@pytest.mark.parametrize("lazy,coupled,scaled", [
    ("none", False, False), ("none", False, True), ("decay", False, False), ("decay", False, True),
    ("moments", False, False), ("moments", False, True), ("none", True, False), ("none", True, True),
    ("decay", True, False)])
def test_against_generic_root_of_raw_stationarity(lazy, coupled, scaled):
    """K = 5 Zipf rows, B = 3, r = 1.3, λ = 0.7, ε = 1e-3: all 25 weights by scipy root from W = 0."""
    P = np.array([0.4, 0.25, 0.18, 0.12, 0.05])
    B, lam, r, eps = 3, 0.7, 1.3, 1e-3
    c = row_decay_scale(P, batch_size=B, lazy=lazy) if scaled else np.ones(5)
    sol = scipy.optimize.root(_raw_residual, np.zeros(25), args=(P, B, lam, c, r, eps, lazy, coupled),
                              method="hybr", options={"xtol": 1e-14})
    assert np.abs(_raw_residual(sol.x, P, B, lam, c, r, eps, lazy, coupled)).max() < 1e-10
    generic = loss_margins_from_logits(r * sol.x.reshape(5, 5))
    ours = fair_margin_law(P, lam, batch_size=B, r=r, eps=eps, decay_scale=c, lazy=lazy, coupled=coupled).margins
    np.testing.assert_allclose(ours, generic, rtol=1e-8)


@given(frequency_vectors(max_size=24, max_ratio=1e4), weight_decays(1e-2, 10.0), batch_sizes,
       st.sampled_from([0.0, 1e-8, 1e-4]))
def test_options_off_is_t3(pi, lam, B, eps):
    """No option: the margins of T3 (``margin_law``, an independent solver)."""
    ours = fair_margin_law(pi, lam, batch_size=B, eps=eps).margins
    t3 = margin_law(pi, lam, optimizer="adamw", batch_size=B, eps=eps).margins
    np.testing.assert_allclose(ours, t3, rtol=1e-9)


@given(frequency_vectors(max_size=24, max_ratio=1e4), weight_decays(1e-2, 10.0), batch_sizes,
       st.sampled_from(LAZY))
def test_fair_scale_equalises_margins_at_eps_zero(pi, lam, B, lazy):
    """c_x ∝ ρ√α/δ (``row_decay_scale``) gives every row the same ε → 0 margin."""
    c = row_decay_scale(pi, batch_size=B, lazy=lazy)
    m = fair_margin_law(pi, lam, batch_size=B, eps=0.0, decay_scale=c, lazy=lazy).margins
    np.testing.assert_allclose(m, m[0], rtol=1e-10)


@given(frequency_vectors(max_size=24, max_ratio=1e4), weight_decays(1e-2, 10.0), batch_sizes,
       st.sampled_from([0.0, 1e-8, 1e-3]))
def test_orderings(pi, lam, B, eps):
    """Skipping the decay of absent rows never lowers a margin; at ε = 0 lazy decay ≥ lazy moments."""
    kw = dict(batch_size=B, eps=eps)
    plain = fair_margin_law(pi, lam, **kw).margins
    decay = fair_margin_law(pi, lam, lazy="decay", **kw).margins
    moments = fair_margin_law(pi, lam, lazy="moments", **kw).margins
    assert (decay >= plain * (1 - 1e-12)).all() and (moments >= plain * (1 - 1e-12)).all()
    if eps == 0:
        assert (decay >= moments * (1 - 1e-12)).all()


@given(st.floats(1e-7, 0.5, allow_nan=False, allow_subnormal=False), st.integers(1, 10 ** 6))
def test_lazy_moments_index_is_cauchy_schwarz_below_one(p, B):
    """ρ/√a = E[N | N≥1]/√E[N² | N≥1] ≤ 1; equal to the binomial computation. p ≤ ½ is the
    smaller of the two frequencies, so the reference's cancellation bound below covers both rows."""
    pi = np.array([p, 1 - p])
    idx = fairness_index(pi, B, lazy="moments")
    assert (idx <= 1 + 1e-12).all()
    if B <= 2000:
        EN, EN2, pres = _count_moments(pi, B)
        # 1 − pmf(0) loses ~eps/π relative digits to cancellation on the reference side
        np.testing.assert_allclose(idx, (EN / pres) / np.sqrt(EN2 / pres), rtol=1e-8 + 10 * np.finfo(float).eps / p)


@given(frequency_vectors(max_size=16, max_ratio=1e3), weight_decays(0.3, 10.0), st.integers(1, 256),
       st.sampled_from(LAZY))
def test_eps_limit_and_monotone(pi, lam, B, lazy):
    """Margins fall as ε grows and reach the closed form 2rρ√α/(λcδ) as ε → 0. The gap at ε is
    bounded by T3's exact ε bound ε/(r S c) (r = 1), with S = s/√α the row's effective gradient
    scale and c = 1/(e^m + K − 1) the other-class probability at the limit margin; it is not
    O(ε) uniformly: at m ≈ 14 (K = 7, B = 1) c ≈ 6e-7 and the gap at ε = 1e-12 is 2.7e-6."""
    law = [fair_margin_law(pi, lam, batch_size=B, eps=e, lazy=lazy) for e in (1e-3, 1e-6, 1e-12)]
    m = np.array([f.margins for f in law])
    assert (np.diff(m, axis=0) >= -1e-9 * m[1:]).all()
    P, K, limit = pi / pi.sum(), pi.size, law[-1].limit_margins
    alpha = presence_probability(P, B) if lazy == "moments" else 1.0
    S = np.sqrt(P * (1 + (B - 1) * P) / B) / np.sqrt(alpha)
    bound = 1e-12 * (np.exp(limit) + K - 1) / S
    assert (np.abs(m[-1] - limit) <= (bound + 1e-9) * limit).all()


def test_presence_and_rho_formulas():
    pi = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(presence_probability(pi, 4), 1 - (1 - pi) ** 4, rtol=1e-14)
    np.testing.assert_allclose(adamw_rho(pi, 4), np.sqrt(4 * pi / (1 + 3 * pi)), rtol=1e-14)


@pytest.mark.parametrize("lazy", LAZY)
def test_general_bigram_solver_agrees_on_the_deterministic_task(lazy):
    """``fair_bigram_equilibrium`` (via T3's ``bigram_equilibrium``) = ``fair_margin_law`` (scalar equations)."""
    P = zipf_pmf(12, 1.1)
    c = np.linspace(0.5, 1.5, 12)
    eq = fair_bigram_equilibrium(np.diag(P), 0.8, batch_size=6, r=1.4, eps=1e-4, decay_scale=c, lazy=lazy)
    law = fair_margin_law(P, 0.8, batch_size=6, r=1.4, eps=1e-4, decay_scale=c, lazy=lazy)
    np.testing.assert_allclose(eq.loss_per_token, law.loss_per_token, rtol=1e-7)


@pytest.mark.parametrize("kwargs,name", [
    ({"lazy": "rows"}, "lazy"), ({"decay_scale": np.ones(2)}, "decay_scale"),
    ({"decay_scale": [1.0, 0.0, 1.0]}, "decay_scale"),
    ({"batch_size": 0}, "batch_size"),
    ({"eps": -1.0}, "eps"), ({"coupled": True, "lazy": "moments"}, "lazy"), ({"r": 0.0}, "r"),
])
def test_bad_input(kwargs, name):
    args = dict(batch_size=4) | kwargs
    with pytest.raises(ValueError, match=name):
        fair_margin_law([0.5, 0.3, 0.2], 1.0, **args)
