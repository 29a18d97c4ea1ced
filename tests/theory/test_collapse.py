"""T8, the exact collapse law: the closed-form thresholds against the certified solver on both
sides (R/R* = 0.99: the minority classifiers differ; 1.01: they are equal), UFM with and without
bias and the factored-LM copy family untied and tied; any equal-frequency group; the all-collapse
threshold of T5 Step 5 with and without a bias.

"Equal to solver precision": on the collapsed side the solver's rank growth never adds the
within-group contrast direction (its singular value √π_B is below μ, a strict margin of ≥ 0.5 %),
so the classifiers come out equal to rounding; 1 − cos ≤ 1e-9 leaves six decades for rounding of
norms ~1. On the other side the contrast singular value grows linearly with the distance to the
threshold, so 1 − cos is quadratic in it and can be small: the not-merged side asserts a
relative classifier difference > 1e-3 instead.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from imbalance.testing.strategies import frequency_vectors
from imbalance.theory import factored_bigram_equilibrium, ufm_equilibrium
from imbalance.theory.collapse import (
    factored_collapse_frequency,
    minority_collapse_threshold,
    ufm_all_collapse,
    ufm_collapse_frequency,
)
from imbalance.theory.ufm import two_group_pi

SIDES = ((0.99, False), (1.01, True))
decays = st.floats(-2.5, -0.5).map(lambda e: 10.0 ** e)


def _cos(rows, i, j):
    a, b = rows[i], rows[j]
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _check(rows, i, j, merged):
    cos = _cos(rows, i, j)
    if merged:
        assert 1 - cos <= 1e-9, cos
    else:
        # scale-free: the classifiers differ by ≥ 0.1 % of their length (1 − cos > 1e-4 holds
        # only while λ_Wλ_H ≳ 1e-4: at λ_W = 1e-2, λ_H = 10^-2.5, K_A = 1, K_B = 2 it is 6.9e-5)
        diff = np.linalg.norm(rows[i] - rows[j]) / np.linalg.norm(rows[i])
        assert diff > 1e-3, (diff, cos)


@given(st.integers(1, 4), st.integers(2, 4), decays, decays, st.booleans())
def test_ufm_minority_collapse_on_both_sides(ka, kb, lam_w, lam_h, bias):
    R = minority_collapse_threshold(ka, kb, lam_w, lam_h)
    assume(R * 0.99 >= 1.0)
    for f, merged in SIDES:
        eq = ufm_equilibrium(two_group_pi(ka, kb, R * f), lam_w, lam_h, bias=bias, rtol=1e-11)
        _check(eq.W, ka, ka + 1, merged)


@given(st.integers(1, 4), st.integers(2, 4), decays, decays, st.booleans())
def test_factored_copy_family_collapse_on_both_sides(ka, kb, lam_a, lam_b, tied):
    """Counts C = diag(π) (context k → token k); unembedding rows W_v of two minority tokens.
    Solver tolerance 1e-9, not the 1e-11 of the UFM test: near the threshold the tied solver's
    line search can stall at a relative gap of a few 1e-10, and where depends on rounding (one
    CPU certified 1e-11 at ka = 1, kb = 3, λ = 0.0137, R/R* = 0.99, another stalled at 4.1e-10
    with the same classifiers). The assertions do not depend on it: a solve certified without the
    within-group contrast direction would give equal rows and fail the not-merged side."""
    kw = dict(model="factored", tied=True, lam=lam_a) if tied else dict(model="factored", lam_w=lam_a, lam_h=lam_b)
    R = minority_collapse_threshold(ka, kb, **kw)
    assume(R * 0.99 >= 1.0)
    for f, merged in SIDES:
        C = np.diag(two_group_pi(ka, kb, R * f))
        eq = (factored_bigram_equilibrium(C, lam=lam_a, tied=True, rtol=1e-9) if tied
              else factored_bigram_equilibrium(C, lam_a, lam_b, rtol=1e-9))
        _check(eq.W, ka, ka + 1, merged)


@given(frequency_vectors(min_size=2, max_size=4, max_ratio=50.0), st.integers(2, 4), st.floats(0.05, 0.6),
       st.booleans())
def test_any_equal_frequency_group_merges_at_pi_equal_lam_product(others, m, group_mass, bias):
    """A group of m ≥ 2 classes with one frequency π_G, whatever the other classes are: merged iff
    π_G ≤ λ_Wλ_H. λ_W = λ_H chosen so that λ_Wλ_H = π_G/1.02 (not merged) or 1.02 π_G (merged)."""
    pi = np.concatenate([np.full(m, group_mass / m), (1 - group_mass) * others])
    pg = group_mass / m
    for f, merged in ((1 / 1.02, False), (1.02, True)):
        lam = np.sqrt(pg * f)
        eq = ufm_equilibrium(pi, lam, lam, bias=bias, rtol=1e-11)
        scale = np.linalg.norm(eq.W, axis=1).max()  # the group may merge at 0 (rounding-level rows)
        diff = np.linalg.norm(eq.W[0] - eq.W[1])
        if merged:
            assert diff <= 1e-9 * scale + 1e-12, (diff, scale)
        else:
            assert diff > 1e-4 * scale, (diff, scale)


@pytest.mark.parametrize("bias", [False, True])
def test_all_collapse_threshold_and_losses(bias):
    """π = (.5, .3, .15, .05): Z = 0 iff μ ≥ 0.655 without a bias, ≥ 0.620 with one; the losses
    there are log K resp. −log π_k (proofs/T5, Step 5)."""
    pi = np.array([0.5, 0.3, 0.15, 0.05])
    ac = ufm_all_collapse(pi, bias=bias)
    assert ac.mu == pytest.approx(0.620 if bias else 0.655, abs=5e-4)
    above = ufm_equilibrium(pi, 1.01 * ac.mu, 1.01 * ac.mu, bias=bias, rtol=1e-11)
    assert np.abs(above.W).max() <= 1e-9
    np.testing.assert_allclose(above.loss_per_token, ac.loss_per_token, rtol=1e-9)
    below = ufm_equilibrium(pi, 0.99 * ac.mu, 0.99 * ac.mu, bias=bias, rtol=1e-11)
    assert np.abs(below.W).max() > 1e-3
    assert below.aggregate_loss < pi @ ac.loss_per_token


def test_closed_forms_vectorise_over_lambda():
    lw = np.array([0.01, 0.1])
    np.testing.assert_allclose(ufm_collapse_frequency(lw, 0.2), lw * 0.2)
    np.testing.assert_allclose(factored_collapse_frequency(lw, 0.2), np.sqrt(lw * 0.2))
    np.testing.assert_allclose(factored_collapse_frequency(lam=lw, tied=True), lw / 2)
    R = minority_collapse_threshold(2, 3, lw, 0.2)
    np.testing.assert_allclose(R, np.maximum(1, (1 / (lw * 0.2) - 3) / 2))


@pytest.mark.parametrize("kwargs, name", [
    (dict(k_major=2, k_minor=1, lam_w=0.1, lam_h=0.1), "k_minor"),
    (dict(k_major=0, k_minor=2, lam_w=0.1, lam_h=0.1), "k_major"),
    (dict(k_major=2, k_minor=2, lam_w=-0.1, lam_h=0.1), "lam_w"),
    (dict(k_major=2, k_minor=2, lam_w=0.1, lam_h=0.1, model="lm"), "model"),
    (dict(k_major=2, k_minor=2, lam_w=0.1, lam_h=0.1, model="factored", tied=True), "one decay"),
    (dict(k_major=2, k_minor=2, lam=0.1), "lam"),
])
def test_bad_input_names_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        minority_collapse_threshold(**kwargs)
