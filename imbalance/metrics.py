"""Per-token metrics. Token axis last; any leading axes (λ, seed, step).

ℓ_v: mean cross-entropy over occurrences of v as target. ``pi`` is the token frequency
(counts are normalised). Buckets: ``frequency_buckets`` (powers of 3 as Pinto et al. 2024,
arXiv 2410.11985, or equal mass as Kunstner et al. 2024, arXiv 2402.19449).
Every function raises ``ValueError`` naming the parameter and the value on bad input;
a per-token loss that is NaN where π_v > 0 is bad input (nothing was measured for a
token the average should count).
"""

from __future__ import annotations

import numpy as np

from ._validate import _short, allocation, as_choice, as_frequencies, as_positive_int, as_real_array
from .zipf import frequency_buckets

__all__ = ["per_token_loss", "aggregate_loss", "token_balanced_loss", "bucket_loss", "fairness_gap",
           "fraction_learned", "learning_speed", "mean_ci", "expected_calibration_error", "marginal_calibration_error",
           "frequency_buckets"]


def _real_array(x, name: str, *, min_ndim: int = 0) -> np.ndarray:
    arr = as_real_array(x, name)
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    return arr


def _pi_for(pi, values, values_name):
    """π normalised, with as many entries as the token (last) axis of ``values``."""
    pi = as_frequencies(pi, "pi")
    if values.shape[-1] != pi.size:
        raise ValueError(f"pi has {pi.size} tokens but {values_name} has {values.shape[-1]} on its token (last) axis "
                         f"(shape {values.shape})")
    return pi


def _loss_and_pi(loss_per_token, pi):
    """(ℓ (..., V) float64, π (V,) normalised, mask π > 0): ℓ finite where π > 0 (NaN allowed elsewhere)."""
    lpt = _real_array(loss_per_token, "loss_per_token", min_ndim=1)
    pi = _pi_for(pi, lpt, "loss_per_token")
    seen = pi > 0
    bad = ~np.isfinite(lpt[..., seen])
    if bad.any():
        v = int(np.flatnonzero(seen)[np.argwhere(bad)[0][-1]])
        raise ValueError(f"loss_per_token must be finite where pi > 0, got loss_per_token[..., {v}]="
                         f"{lpt[..., v].ravel()[0]!r} with pi[{v}]={pi[v]!r}")
    return lpt, pi, seen


def per_token_loss(ce, targets, vocab_size: int) -> np.ndarray:
    """ℓ_v from per-occurrence losses ``ce`` (N,) and their targets (N,) → (V,); unseen → NaN."""
    vocab_size = as_positive_int(vocab_size, "vocab_size")
    ce = _real_array(ce, "ce").ravel()
    targets = np.asarray(targets).ravel()
    if targets.size == 0:
        targets = targets.astype(np.int64)
    if ce.shape != targets.shape:
        raise ValueError(f"ce and targets must have the same size, got {ce.shape} and {targets.shape}")
    if targets.size and not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integer token ids, got dtype {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= vocab_size):
        bad = targets[(targets < 0) | (targets >= vocab_size)][0]
        raise ValueError(f"targets must lie in [0, vocab_size={vocab_size}), got a target {int(bad)}")
    if not np.isfinite(ce).all() or (ce < 0).any():
        bad = ce[~np.isfinite(ce) | (ce < 0)][0]
        raise ValueError(f"ce must be finite and >= 0 (a cross-entropy), got a value {bad!r}")
    with allocation("vocab_size", vocab_size):
        tot = np.bincount(targets, weights=ce, minlength=vocab_size)
        cnt = np.bincount(targets, minlength=vocab_size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def aggregate_loss(loss_per_token, pi) -> np.ndarray:
    """Σ_v π_v ℓ_v (the usual average loss)."""
    lpt, pi, seen = _loss_and_pi(loss_per_token, pi)
    return (lpt[..., seen] * pi[seen]).sum(-1)


def token_balanced_loss(loss_per_token, pi) -> np.ndarray:
    """(1/|{v: π_v > 0}|) Σ_v ℓ_v: every token type counts once."""
    lpt, _, seen = _loss_and_pi(loss_per_token, pi)
    return (lpt[..., seen] / seen.sum()).sum(-1)  # divided first: no overflow for huge losses


def bucket_loss(loss_per_token, pi, scheme: str = "log3", n_groups: int = 10, weighting: str = "mass"):
    """(bucket ids (n_b,), per-bucket loss (..., n_b)); the one per-bucket mean of the toolkit.

    ``weighting="mass"``: mean CE over occurrences in the bucket (Σ π ℓ / Σ π);
    ``"types"``: plain mean over the bucket's token types. Tokens with π_v = 0 belong to
    no bucket; empty buckets are left out.
    """
    weighting = as_choice(weighting, "weighting", {"mass", "types"})
    lpt, pi, _ = _loss_and_pi(loss_per_token, pi)
    ids = frequency_buckets(pi, scheme=scheme, n_groups=n_groups)
    buckets = np.unique(ids[ids >= 0])
    out = []
    for b in buckets:
        sel = ids == b
        w = pi[sel] if weighting == "mass" else np.ones(sel.sum())
        out.append((lpt[..., sel] * (w / w.sum())).sum(-1))
    return buckets, np.stack(out, -1)


def fairness_gap(loss_per_token, pi, scheme: str = "log3", n_groups: int = 10) -> np.ndarray:
    """Tail-bucket minus head-bucket loss (> 0: rare tokens are predicted worse)."""
    _, bl = bucket_loss(loss_per_token, pi, scheme=scheme, n_groups=n_groups)
    return bl[..., -1] - bl[..., 0]


def fraction_learned(loss_per_token, pi, threshold: float = float(np.log(2.0))) -> np.ndarray:
    """Fraction of token types (π_v > 0) with ℓ_v ≤ threshold (default log 2 ⇔ p ≥ ½ on average)."""
    lpt, _, seen = _loss_and_pi(loss_per_token, pi)
    t = _real_array(threshold, "threshold")
    if t.ndim != 0 or not np.isfinite(t):
        raise ValueError(f"threshold must be a finite number, got threshold={_short(threshold)}")
    return (lpt[..., seen] <= t).mean(-1)


def learning_speed(steps, curve) -> np.ndarray:
    """Normalised area under each token's loss curve: (1/T)∫ ℓ_v(t)/ℓ_v(0) dt (trapezoid).

    ``steps`` (n,) increasing from the first evaluation, ``curve`` (n, ..., V) → (..., V),
    finite with a positive first row. 1 = never moved from the initial loss, → 0 = learned at once.
    """
    steps = _real_array(steps, "steps")
    curve = _real_array(curve, "curve", min_ndim=1)
    if steps.ndim != 1 or steps.size < 2 or curve.shape[0] != steps.size or not np.isfinite(steps).all() \
            or (np.diff(steps) <= 0).any():
        raise ValueError(f"steps must be finite, increasing (n >= 2) and match curve's first axis, got "
                         f"steps={_short(steps)} (shape {steps.shape}), curve shape {curve.shape}")
    if not np.isfinite(curve).all() or (curve < 0).any() or (curve[0] <= 0).any():
        raise ValueError(f"curve must be finite, >= 0 and positive at the first step, got curve={_short(curve)}")
    rel = curve / curve[0]
    area = (0.5 * (rel[1:] + rel[:-1]) * np.diff(steps).reshape((-1,) + (1,) * (curve.ndim - 1))).sum(0)
    return area / (steps[-1] - steps[0])


def mean_ci(x, axis: int = 0, level: float = 0.95):
    """(mean, half-width) of a Student-t confidence interval along ``axis`` (e.g. seeds).
    Every sample must be finite: a missing or diverged measurement is an error, not a NaN."""
    x = _real_array(x, "x", min_ndim=1)
    if not np.isfinite(x).all():
        raise ValueError(f"x must be finite, got a value {x[~np.isfinite(x)][0]!r}")
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be an integer in [-{x.ndim}, {x.ndim}), got axis={_short(axis)}")
    n = x.shape[axis]
    if n < 2:
        raise ValueError(f"mean_ci needs at least 2 samples along axis {axis}, got {n}")
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got level={_short(level)}")
    import scipy.stats  # imported on use: it is slow to import and most callers never need it

    with np.errstate(over="ignore", invalid="ignore"):
        mean, half = x.mean(axis), scipy.stats.t.ppf(0.5 + level / 2, n - 1) * x.std(axis, ddof=1) / np.sqrt(n)
    if not (np.isfinite(mean).all() and np.isfinite(half).all()):
        raise ValueError("x overflows float64 in its mean or spread; rescale it")
    return mean, half


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> np.ndarray:
    """Top-1 expected calibration error over the last axis (Guo et al. 2017, arXiv 1706.04599):
    predictions binned by confidence into ``n_bins`` equal-width bins on [0, 1] (right-closed,
    0 in the first), ECE = Σ_b (n_b/N) |accuracy_b − mean confidence_b|. Leading axes are kept."""
    conf = _real_array(confidence, "confidence")
    corr = _real_array(correct, "correct")
    if conf.shape != corr.shape or conf.ndim == 0 or conf.shape[-1] == 0:
        raise ValueError(f"confidence and correct must have the same non-empty shape, got {conf.shape} and "
                         f"{corr.shape}")
    if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
        bad = conf[~(np.isfinite(conf) & (conf >= 0) & (conf <= 1))][0]
        raise ValueError(f"confidence must lie in [0, 1], got a value {bad!r}")
    if not np.isin(corr, (0.0, 1.0)).all():
        raise ValueError(f"correct must be 0/1 (or booleans), got a value {corr[~np.isin(corr, (0.0, 1.0))][0]!r}")
    n_bins = as_positive_int(n_bins, "n_bins")
    if n_bins > 2 ** 31 - 1:
        raise ValueError(f"n_bins must be < 2**31, got n_bins={n_bins}")
    lead = conf.shape[:-1]
    conf2, corr2 = conf.reshape(-1, conf.shape[-1]), corr.reshape(-1, conf.shape[-1])
    b = np.clip(np.ceil(conf2 * n_bins).astype(int) - 1, 0, n_bins - 1)  # (R, N) bin of each prediction
    out = np.empty(conf2.shape[0])
    for i in range(conf2.shape[0]):
        gap = np.bincount(b[i], weights=corr2[i] - conf2[i], minlength=n_bins)  # Σ (correct − conf) per bin
        out[i] = np.abs(gap).sum() / conf2.shape[1]
    return out.reshape(lead) if lead else out[0]


def marginal_calibration_error(pred_marginal, pi) -> np.ndarray:
    """Total variation ½ Σ_v |p̄_v − π_v| between the model's average predicted distribution
    p̄ = E_x p(·|x) (normalised here) and the target frequencies π (decay flattens p̄ towards
    uniform, so rare tokens are over-predicted; reweighting and logit adjustment do so by design)."""
    p = _real_array(pred_marginal, "pred_marginal", min_ndim=1)
    pi = _pi_for(pi, p, "pred_marginal")
    if not np.isfinite(p).all() or (p < 0).any():
        bad = p[~(np.isfinite(p) & (p >= 0))][0]
        raise ValueError(f"pred_marginal must be finite and non-negative, got a value {bad!r}")
    with np.errstate(over="ignore"):
        total = p.sum(-1, keepdims=True)
    if (total <= 0).any() or not np.isfinite(total).all():
        raise ValueError("pred_marginal must have a positive, finite sum over the token axis, "
                         f"got sums {_short(total)}")
    return 0.5 * np.abs(p / total - pi).sum(-1)
