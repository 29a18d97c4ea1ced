"""Per-token metrics (DESIGN, "Metrics"). Token axis last; any leading axes (λ, seed, step).

ℓ_v: mean cross-entropy over occurrences of v as target. Buckets: ``frequency_buckets``
(powers of 3 as Pinto et al. 2024, or equal mass as Kunstner et al. 2024).
"""

from __future__ import annotations

import numpy as np

from ._validate import as_frequencies
from .zipf import frequency_buckets

__all__ = ["per_token_loss", "aggregate_loss", "token_balanced_loss", "bucket_loss", "fairness_gap",
           "fraction_learned", "learning_speed", "mean_ci", "expected_calibration_error", "marginal_calibration_error"]


def _freq(freq, V):
    return as_frequencies(freq, "freq", V)


def per_token_loss(ce, targets, vocab_size: int) -> np.ndarray:
    """ℓ_v from per-occurrence losses ``ce`` (N,) and their targets (N,) → (V,); unseen → NaN."""
    ce = np.asarray(ce, dtype=np.float64).ravel()
    targets = np.asarray(targets).ravel()
    if ce.shape != targets.shape:
        raise ValueError(f"ce and targets must have the same size, got {ce.shape} and {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= vocab_size):
        raise ValueError(f"targets must lie in [0, vocab_size={vocab_size})")
    tot = np.bincount(targets, weights=ce, minlength=vocab_size)
    cnt = np.bincount(targets, minlength=vocab_size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def aggregate_loss(loss_per_token, freq) -> np.ndarray:
    """Σ_v π_v ℓ_v (the usual average loss)."""
    lpt = np.asarray(loss_per_token, dtype=np.float64)
    pi = _freq(freq, lpt.shape[-1])
    seen = pi > 0
    return (lpt[..., seen] * pi[seen]).sum(-1)


def token_balanced_loss(loss_per_token, freq) -> np.ndarray:
    """(1/|{v: π_v > 0}|) Σ_v ℓ_v: every token type counts once."""
    lpt = np.asarray(loss_per_token, dtype=np.float64)
    seen = _freq(freq, lpt.shape[-1]) > 0
    return lpt[..., seen].mean(-1)


def bucket_loss(loss_per_token, freq, scheme: str = "log3", n_groups: int = 10, weighting: str = "mass"):
    """(bucket ids (n_b,), per-bucket loss (..., n_b)).

    ``weighting="mass"``: mean CE over occurrences in the bucket (Σ π ℓ / Σ π);
    ``"types"``: plain mean over the bucket's token types.
    """
    lpt = np.asarray(loss_per_token, dtype=np.float64)
    pi = _freq(freq, lpt.shape[-1])
    if weighting not in ("mass", "types"):
        raise ValueError(f"weighting must be 'mass' or 'types', got weighting={weighting!r}")
    ids = frequency_buckets(pi, scheme=scheme, n_groups=n_groups)
    buckets = np.unique(ids[ids >= 0])
    out = []
    for b in buckets:
        sel = ids == b
        w = pi[sel] if weighting == "mass" else np.ones(sel.sum())
        out.append((lpt[..., sel] * w).sum(-1) / w.sum())
    return buckets, np.stack(out, -1)


def fairness_gap(loss_per_token, freq, scheme: str = "log3", n_groups: int = 10) -> np.ndarray:
    """Tail-bucket minus head-bucket loss (> 0: rare tokens are predicted worse)."""
    _, bl = bucket_loss(loss_per_token, freq, scheme=scheme, n_groups=n_groups)
    return bl[..., -1] - bl[..., 0]


def fraction_learned(loss_per_token, freq, threshold: float = float(np.log(2.0))) -> np.ndarray:
    """Fraction of token types (π_v > 0) with ℓ_v ≤ threshold (default log 2 ⇔ p ≥ ½ on average)."""
    lpt = np.asarray(loss_per_token, dtype=np.float64)
    seen = _freq(freq, lpt.shape[-1]) > 0
    return (lpt[..., seen] <= threshold).mean(-1)


def learning_speed(steps, curve) -> np.ndarray:
    """Normalised area under each token's loss curve: (1/T)∫ ℓ_v(t)/ℓ_v(0) dt (trapezoid).

    ``steps`` (n,) increasing from the first evaluation, ``curve`` (n, ..., V) → (..., V).
    1 = never moved from the initial loss, → 0 = learned at once.
    """
    steps = np.asarray(steps, dtype=np.float64)
    curve = np.asarray(curve, dtype=np.float64)
    if steps.ndim != 1 or steps.size < 2 or curve.shape[0] != steps.size or (np.diff(steps) <= 0).any():
        raise ValueError(f"steps must be increasing (n >= 2) and match curve's first axis, got "
                         f"steps shape {steps.shape}, curve shape {curve.shape}")
    rel = curve / curve[0]
    area = (0.5 * (rel[1:] + rel[:-1]) * np.diff(steps).reshape((-1,) + (1,) * (curve.ndim - 1))).sum(0)
    return area / (steps[-1] - steps[0])


def mean_ci(x, axis: int = 0, level: float = 0.95):
    """(mean, half-width) of a Student-t confidence interval along ``axis`` (e.g. seeds)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    if n < 2:
        raise ValueError(f"mean_ci needs at least 2 samples along axis {axis}, got {n}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got level={level!r}")
    import scipy.stats  # here, not at module level: it costs 0.7 s of every sweep job's start

    half = scipy.stats.t.ppf(0.5 + level / 2, n - 1) * x.std(axis, ddof=1) / np.sqrt(n)
    return x.mean(axis), half


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> np.ndarray:
    """Top-1 expected calibration error over the last axis (Guo et al. 2017): predictions
    binned by confidence into ``n_bins`` equal-width bins on [0, 1] (right-closed, 0 in the
    first), ECE = Σ_b (n_b/N) |accuracy_b − mean confidence_b|. Leading axes are kept."""
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    if conf.shape != corr.shape or conf.ndim == 0 or conf.shape[-1] == 0:
        raise ValueError(f"confidence and correct must have the same non-empty shape, got {conf.shape} and "
                         f"{corr.shape}")
    if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
        raise ValueError("confidence must lie in [0, 1]")
    if not np.isin(corr, (0.0, 1.0)).all():
        raise ValueError("correct must be 0/1 (or booleans)")
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got n_bins={n_bins!r}")
    n_bins = int(n_bins)
    lead = conf.shape[:-1]
    conf2, corr2 = conf.reshape(-1, conf.shape[-1]), corr.reshape(-1, conf.shape[-1])
    b = np.clip(np.ceil(conf2 * n_bins).astype(int) - 1, 0, n_bins - 1)  # (R, N) bin of each prediction
    out = np.empty(conf2.shape[0])
    for i in range(conf2.shape[0]):
        gap = np.bincount(b[i], weights=corr2[i] - conf2[i], minlength=n_bins)  # Σ (correct − conf) per bin
        out[i] = np.abs(gap).sum() / conf2.shape[1]
    return out.reshape(lead) if lead else out[0]


def marginal_calibration_error(pred_marginal, freq) -> np.ndarray:
    """Total variation ½ Σ_v |p̄_v − π_v| between the model's average predicted distribution
    p̄ = E_x p(·|x) and the target frequencies π (decay flattens p̄ towards uniform, so rare
    tokens are over-predicted; reweighting and logit adjustment do so by design)."""
    p = np.asarray(pred_marginal, dtype=np.float64)
    pi = _freq(freq, p.shape[-1])
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("pred_marginal must be finite and non-negative")
    return 0.5 * np.abs(p / p.sum(-1, keepdims=True) - pi).sum(-1)
