"""imbalance.testing: every strategy yields valid, bounded, NaN- and subnormal-free inputs."""


import numpy as np
import pytest
import scipy.sparse as sparse
from hypothesis import given
from hypothesis import strategies as st

from imbalance._validate import as_count_matrix, as_distribution
from imbalance.testing import (
    bigram_counts,
    feature_sets,
    frequency_vectors,
    labelled_features,
    register_profiles,
    weight_decays,
    zipf_vectors,
)

TINY = np.finfo(np.float64).tiny  # smallest normal


def _no_subnormal(a):
    a = np.asarray(a, dtype=np.float64)
    return np.all((a == 0) | (np.abs(a) >= TINY)) and np.isfinite(a).all()


@given(st.sampled_from(["any", "arbitrary", "zipf"]), st.sampled_from([1.0, 1e3, 1e12]), st.data())
def test_frequency_vectors_are_distributions_within_ratio(kind, ratio, data):
    pi = data.draw(frequency_vectors(min_size=2, max_size=40, max_ratio=ratio, kind=kind))
    as_distribution(pi)
    assert 2 <= pi.size <= 40 and _no_subnormal(pi) and (pi > 0).all()
    assert pi.max() / pi.min() <= ratio * (1 + 1e-9)


@given(zipf_vectors(max_size=30))
def test_zipf_vectors_sorted(pi):
    as_distribution(pi)
    assert np.all(np.diff(pi) <= 0)


@given(weight_decays(1e-6, 1e3))
def test_weight_decays_bounded(lam):
    assert 1e-6 <= lam <= 1e3 and _no_subnormal(lam)


@given(bigram_counts(max_contexts=7, max_vocab=9))
def test_bigram_counts_valid(counts):
    M = as_count_matrix(counts)
    dense = counts.toarray() if sparse.issparse(counts) else counts
    assert (dense.sum(1) > 0).all() and dense.shape[0] <= 7 and 2 <= dense.shape[1] <= 9
    assert np.issubdtype(M.dtype, np.floating) and (M.data == np.round(M.data)).all()


@given(bigram_counts(max_vocab=6, square=True))
def test_square_bigram_counts(counts):
    assert counts.shape[0] == counts.shape[1]


@given(feature_sets(max_samples=30, max_dim=5))
def test_feature_norms_bounded(data):
    H, R = data
    assert np.all(np.linalg.norm(H, axis=1) <= R) and _no_subnormal(H)


@given(labelled_features(max_classes=4))
def test_labelled_features_cover_classes(data):
    H, y, R = data
    K = y.max() + 1
    assert set(np.unique(y)) == set(range(K)) and H.shape[0] == y.size


@pytest.mark.parametrize("make,name", [
    (lambda: frequency_vectors(max_ratio=0.5), "max_ratio"),
    (lambda: frequency_vectors(kind="pareto"), "kind"),
    (lambda: frequency_vectors(min_size=1), "min_size"),
    (lambda: weight_decays(0.0, 1.0), "min_value"),
    (lambda: weight_decays(2.0, 1.0), "max_value"),
    (lambda: bigram_counts(density=1.5), "density"),
    (lambda: feature_sets(R=-1.0), "R"),
])
def test_bad_arguments_name_the_parameter(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_register_profiles(monkeypatch):
    from hypothesis import settings

    current = settings._current_profile
    try:
        monkeypatch.setenv("HYPOTHESIS_PROFILE", "thorough")
        assert register_profiles() == "thorough" and settings().max_examples == 1000
        monkeypatch.delenv("HYPOTHESIS_PROFILE")
        monkeypatch.setenv("CI", "true")
        assert register_profiles() == "ci"
        ci = settings()
        assert ci.derandomize and ci.database is None and ci.deadline is None
        monkeypatch.setenv("HYPOTHESIS_PROFILE", "fast")
        with pytest.raises(ValueError, match="HYPOTHESIS_PROFILE"):
            register_profiles()
    finally:
        settings.load_profile(current)
