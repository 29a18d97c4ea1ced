"""T3 statement 5: the relative margin shrink caused by Adam's ε is at most ε/(r·s·c).

The per-class equation (proofs/T3_adamw.md (5)) is
m = (rπ/λ)[a/(s a + ε') + c/(s c + ε')], ε' = ε/r, a = (K−1)c, c = 1/(eᵐ + K − 1), and
m₀ = 2rπ/(λ s). Since 1 − 1/(1 + x) ≤ x, (m₀ − m_ε)/m₀ ≤ ½(ε'/(s a) + ε'/(s c)) ≤ ε'/(s c) with
c taken at m_ε, and c(m_ε) ≥ c(m₀) because m_ε ≤ m₀: the bound with c₀ = c(m₀) is exact, not
first order. ``margin_law`` solves the equation by a root finder; the bound is an independent
closed form evaluated from m₀ alone.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from imbalance.testing.strategies import frequency_vectors, weight_decays
from imbalance.theory import margin_law


def _shrink_and_bounds(pi, lam, r, B, eps):
    m0 = margin_law(pi, lam, r=r, optimizer="adamw", batch_size=B, eps=0.0).margins
    me = margin_law(pi, lam, r=r, optimizer="adamw", batch_size=B, eps=eps).margins
    K = pi.size
    s = np.sqrt(pi * (1 + (B - 1) * pi) / B)
    with np.errstate(over="ignore", divide="ignore"):  # huge m₀: c₀ = 0 and the bound is +∞
        c0 = 1.0 / (np.exp(m0) + K - 1)
        return (m0 - me) / m0, eps / (r * s * c0), eps / (s * c0)


def test_counterexample_to_the_bound_without_r():
    """π = (.5, .3, .2), B = 8, r = 0.1, λ = 1, ε = 1e-3: the old bound ε/(s c) is violated for
    every class; the corrected ε/(r s c) holds."""
    shrink, bound, old = _shrink_and_bounds(np.array([0.5, 0.3, 0.2]), 1.0, 0.1, 8, 1e-3)
    assert (shrink > old).all(), (shrink, old)
    assert (shrink <= bound).all(), (shrink, bound)
    np.testing.assert_allclose(shrink, [0.043, 0.065, 0.087], atol=1e-3)  # values quoted in the proof


@given(frequency_vectors(min_size=2, max_size=12, max_ratio=1e3), weight_decays(1e-3, 3.0),
       st.floats(0.05, 5.0), st.integers(1, 256), st.floats(1e-10, 1e-1))
def test_eps_shrink_is_bounded(pi, lam, r, B, eps):
    shrink, bound, _ = _shrink_and_bounds(pi, lam, r, B, eps)
    assert (shrink >= -1e-12).all()  # m_ε ≤ m₀
    # the root finder's own relative error (≈ 1e-12) is the only slack
    assert (shrink <= bound * (1 + 1e-9) + 1e-12).all(), (shrink, bound)
