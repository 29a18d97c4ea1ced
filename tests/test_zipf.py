from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from imbalance import frequency_buckets, zipf_pmf


@pytest.mark.parametrize("K,s,q", [(2, 1.0, 0.0), (1000, 1.1, 2.7), (50, 3.0, 0.0), (10, 0.0, 0.0), (5000, 60.0, 0.0)])
def test_zipf_pmf_is_zipf_mandelbrot(K, s, q):
    pi = zipf_pmf(K, s, q)
    assert pi.dtype == np.float64 and pi.shape == (K,)
    assert abs(pi.sum() - 1) < 1e-14 and np.all(pi >= 0)
    k = np.arange(1, K + 1)
    # successive ratios are ((k+q)/(k+1+q))^s, independently of the normaliser
    with np.errstate(under="ignore"):
        ratio = np.exp(-s * (np.log(k[1:] + q) - np.log(k[:-1] + q)))
    ok = pi[:-1] > 1e-290
    np.testing.assert_allclose(pi[1:][ok] / pi[:-1][ok], ratio[ok], rtol=1e-12)


@pytest.mark.parametrize("kwargs,name", [(dict(K=1, s=1.0), "K"), (dict(K=10, s=-1.0), "s"),
                                         (dict(K=10, s=float("nan")), "s"), (dict(K=10, s=1.0, q=-1.0), "q"),
                                         (dict(K=2.5, s=1.0), "K")])
def test_zipf_pmf_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        zipf_pmf(**kwargs)


def test_log3_buckets_follow_powers_of_three():
    freq = np.array([81.0, 80.0, 27.0, 27.1, 9.0, 1.0, 0.0])
    ids = frequency_buckets(freq, "log3")
    # bucket b holds freq/max in (3^-(b+1), 3^-b]: computed here by brute force
    rel = freq / freq.max()
    expect = [next(b for b in range(50) if 3.0 ** -(b + 1) < x <= 3.0 ** -b) if x > 0 else -1 for x in rel]
    assert ids.tolist() == expect


def test_equal_mass_groups_have_equal_mass():
    pi = zipf_pmf(100_000, 1.0)
    ids = frequency_buckets(pi, "equal_mass", n_groups=10)
    mass = np.bincount(ids, weights=pi)
    assert ids.min() == 0 and ids.max() == 9
    # a group can be off by at most one token's mass at each of its two edges
    assert np.all(np.abs(mass - 0.1) <= 2 * pi.max())
    # groups are contiguous in frequency order
    assert np.all(np.diff(ids[np.argsort(-pi, kind="stable")]) >= 0)


def _kunstner_split(counts, n_groups):
    """Kunstner et al. (2024)'s published split, re-implemented as a walk over the tokens:
    visit them by decreasing count (ties by index), add each one's share of the mass to a
    running total, and after a token whose running total reaches the next breakpoint
    g/n_groups (their breakpoints ``np.linspace(0, 1, n, endpoint=False)``) open the
    following group: the crossing token stays in the earlier one. Exact rational arithmetic
    (the rule's own: a token whose running total lands exactly on g/n_groups closes group g − 1,
    which a float running total can miss by an ulp either way)."""
    counts = np.asarray(counts)
    breakpoints = [Fraction(g, n_groups) for g in range(1, n_groups)]
    mass = sum(int(c) for c in counts)
    groups = np.full(counts.size, -1)
    total, group = Fraction(0), 0
    for t in sorted(np.flatnonzero(counts > 0), key=lambda t: (-counts[t], t)):
        groups[t] = group
        total += Fraction(int(counts[t]), mass)
        while breakpoints and total >= breakpoints[0]:
            breakpoints.pop(0)
            group += 1
    return groups


@given(st.lists(st.integers(0, 50), min_size=1, max_size=60).filter(any), st.integers(1, 12))
@example([2, 11, 11, 35, 35, 35, 35, 35, 35, 35, 43], 4)  # the second 35 starts exactly at mass ¼
def test_equal_mass_matches_kunstner_et_al(counts, n_groups):
    assert frequency_buckets(counts, "equal_mass", n_groups).tolist() == _kunstner_split(counts, n_groups).tolist()


@pytest.mark.parametrize("K", [300, 1000, 5000])
def test_equal_mass_matches_kunstner_et_al_on_zipf(K):
    counts = np.round(1e6 * zipf_pmf(K, 1.0))
    assert frequency_buckets(counts, "equal_mass").tolist() == _kunstner_split(counts, 10).tolist()


def test_equal_mass_ties_follow_token_order():
    # the docstring's statement: tied tokens are ordered by index and may straddle a boundary
    assert frequency_buckets([1, 1, 1, 1], "equal_mass", 2).tolist() == [0, 0, 1, 1]
    assert frequency_buckets([1, 3, 1, 3], "equal_mass", 2).tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("freq,scheme", [([], "log3"), ([1.0, -1.0], "log3"), ([0.0, 0.0], "log3"),
                                         ([1.0, np.nan], "equal_mass"), ([1.0, 2.0], "zipf")])
def test_frequency_buckets_rejects_bad_input(freq, scheme):
    with pytest.raises(ValueError, match="pi|scheme"):
        frequency_buckets(freq, scheme)
