"""Frequency laws and frequency buckets."""

from __future__ import annotations

import numpy as np

from ._validate import as_choice, as_nonnegative, as_positive_int

__all__ = ["zipf_pmf", "frequency_buckets"]


def zipf_pmf(K: int, s: float, q: float = 0.0) -> np.ndarray:
    """Zipf–Mandelbrot law π_k ∝ (k + q)^(-s), k = 1..K, as float64 summing to 1.

    >>> zipf_pmf(3, 1.0).round(4).tolist()
    [0.5455, 0.2727, 0.1818]
    """
    K = as_positive_int(K, "K", minimum=2)
    s = as_nonnegative(s, "s")
    q = float(q)
    if not np.isfinite(q) or q <= -1:
        raise ValueError(f"q must be finite and > -1, got q={q!r}")
    # log-space keeps large s (e.g. s = 50) from underflowing to an all-zero vector
    logw = -s * np.log(np.arange(1, K + 1, dtype=np.float64) + q)
    w = np.exp(logw - logw.max())
    return w / w.sum()


def frequency_buckets(freq, scheme: str = "log3", n_groups: int = 10) -> np.ndarray:
    """Integer bucket id per token, 0 = most frequent bucket.

    ``"log3"``: powers-of-3 bins of relative frequency as in Pinto et al. (2024):
    bucket b holds tokens with freq/max(freq) in (3^-(b+1), 3^-b]; tokens with zero
    frequency get id -1.
    ``"equal_mass"``: ``n_groups`` groups of (about) equal probability mass after
    sorting by frequency, as in Kunstner et al. (2024); ties stay together in the
    group where the cumulative mass lands.
    """
    arr = np.asarray(freq, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"freq must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"freq must be finite and non-negative, got {arr[~(np.isfinite(arr) & (arr >= 0))][0]!r}")
    if arr.max() <= 0:
        raise ValueError("freq must have at least one positive entry")
    scheme = as_choice(scheme, "scheme", {"log3", "equal_mass"})
    out = np.full(arr.shape, -1, dtype=np.int64)
    pos = arr > 0
    if scheme == "log3":
        rel = arr[pos] / arr.max()
        b = np.floor(-np.log(rel) / np.log(3.0)).astype(np.int64)
        # the logarithm can land an ulp on the wrong side of a power of 3: settle the
        # boundary by the comparisons that define the bin, 3^-(b+1) < rel <= 3^-b
        b = np.where(rel > 3.0 ** -b.astype(np.float64), b - 1, b)
        b = np.where(rel <= 3.0 ** -(b + 1).astype(np.float64), b + 1, b)
        out[pos] = b
        return out
    n_groups = as_positive_int(n_groups, "n_groups")
    order = np.argsort(-arr, kind="stable")
    mass = np.cumsum(arr[order]) / arr.sum()
    # centre of each token's mass interval decides its group
    centre = mass - 0.5 * arr[order] / arr.sum()
    groups = np.minimum((centre * n_groups).astype(np.int64), n_groups - 1)
    out[order] = groups
    out[~pos] = -1
    return out
