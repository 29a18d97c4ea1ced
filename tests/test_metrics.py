import numpy as np
import pytest
import scipy.stats

from imbalance import metrics as M


def test_per_token_loss_is_mean_over_occurrences():
    ce = np.array([1.0, 3.0, 2.0, 5.0])
    y = np.array([0, 0, 2, 2])
    out = M.per_token_loss(ce, y, 4)
    assert out[0] == 2.0 and out[2] == 3.5 and np.isnan(out[1]) and np.isnan(out[3])


def test_aggregate_equals_overall_mean_and_balanced_is_type_mean():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 500)
    ce = rng.random(500) * (1 + y)
    lpt = M.per_token_loss(ce, y, 5)
    freq = np.bincount(y, minlength=5)
    assert np.isclose(M.aggregate_loss(lpt, freq), ce.mean(), rtol=1e-12)
    assert np.isclose(M.token_balanced_loss(lpt, freq), np.mean([ce[y == v].mean() for v in range(5)]), rtol=1e-12)


def test_buckets_and_gap():
    freq = np.array([100.0, 30.0, 10.0, 3.0, 1.0])
    lpt = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    ids, bl = M.bucket_loss(lpt, freq)
    assert ids.tolist() == [0, 1, 2, 3, 4] and np.allclose(bl, lpt)
    assert np.isclose(M.fairness_gap(lpt, freq), 0.4)
    ids, bl = M.bucket_loss(np.stack([lpt, 2 * lpt]), freq, scheme="equal_mass", n_groups=2, weighting="types")
    assert bl.shape == (2, len(ids))


def test_fraction_learned_and_learning_speed():
    lpt = np.array([0.1, np.log(2), 1.0, 2.0])
    assert M.fraction_learned(lpt, np.ones(4)) == 0.5
    steps = np.array([0.0, 1.0, 2.0])
    curve = np.array([[2.0, 1.0], [1.0, 1.0], [0.0, 1.0]])  # token 0 falls linearly, token 1 never moves
    assert np.allclose(M.learning_speed(steps, curve), [0.5, 1.0])


def test_mean_ci_matches_scipy():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    mean, half = M.mean_ci(x)
    lo, hi = scipy.stats.t.interval(0.95, 3, loc=x.mean(), scale=scipy.stats.sem(x))
    assert np.isclose(mean - half, lo) and np.isclose(mean + half, hi)


def test_bad_input():
    with pytest.raises(ValueError, match="pi"):
        M.aggregate_loss(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="targets"):
        M.per_token_loss([1.0], [7], 3)
    with pytest.raises(ValueError, match="steps"):
        M.learning_speed([0, 0], np.ones((2, 3)))
    with pytest.raises(ValueError, match="weighting"):
        M.bucket_loss(np.ones(3), np.ones(3), weighting="x")


def test_expected_calibration_error_by_hand():
    """ECE against a loop over bins written out directly."""
    conf = np.array([0.05, 0.1, 0.35, 0.4, 0.9, 0.95, 1.0, 0.0])
    corr = np.array([0, 1, 0, 1, 1, 1, 1, 0])
    n_bins = 4
    edges = np.linspace(0, 1, n_bins + 1)
    ref = 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        sel = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if sel.any():
            ref += sel.mean() * abs(corr[sel].mean() - conf[sel].mean())
    assert np.isclose(M.expected_calibration_error(conf, corr, n_bins), ref, rtol=1e-14)
    # leading axes are kept
    two = M.expected_calibration_error(np.stack([conf, conf]), np.stack([corr, 1 - corr]), n_bins)
    assert two.shape == (2,) and np.isclose(two[0], ref)


def test_expected_calibration_error_of_calibrated_and_overconfident_predictors():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.0, 1.0, 200_000)
    corr = (rng.uniform(size=conf.size) < conf).astype(float)  # calibrated by construction
    assert M.expected_calibration_error(conf, corr) < 0.01  # sampling error ~ 15 bins × 1e-3
    over = np.clip(conf + 0.2, 0, 1)  # same outcomes, inflated confidence
    assert M.expected_calibration_error(over, corr) > 0.1


def test_calibration_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="confidence"):
        M.expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError, match="correct"):
        M.expected_calibration_error([0.5], [2])
    with pytest.raises(ValueError, match="same"):
        M.expected_calibration_error([0.5, 0.2], [1])
    with pytest.raises(ValueError, match="n_bins"):
        M.expected_calibration_error([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="pi"):
        M.marginal_calibration_error([0.5, 0.5], [1.0, 0.0, 0.0])
    assert np.isclose(M.marginal_calibration_error([0.5, 0.5], [3.0, 1.0]), 0.25)
