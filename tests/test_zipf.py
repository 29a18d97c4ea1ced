import numpy as np
import pytest

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


@pytest.mark.parametrize("freq,scheme", [([], "log3"), ([1.0, -1.0], "log3"), ([0.0, 0.0], "log3"),
                                         ([1.0, np.nan], "equal_mass"), ([1.0, 2.0], "zipf")])
def test_frequency_buckets_rejects_bad_input(freq, scheme):
    with pytest.raises(ValueError, match="freq|scheme"):
        frequency_buckets(freq, scheme)
