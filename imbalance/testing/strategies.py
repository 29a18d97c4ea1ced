"""Hypothesis strategies for imbalanced softmax models.

Every float is drawn from a bounded interval with ``allow_nan=False`` and
``allow_subnormal=False``; probability vectors are built in log space, so extreme
imbalance (π_max/π_min up to ``max_ratio``) never produces zeros or subnormals.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

from .._validate import as_positive, as_positive_int

__all__ = ["frequency_vectors", "zipf_vectors", "weight_decays", "bigram_counts",
           "feature_sets", "labelled_features"]


def _floats(lo: float, hi: float):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _sizes(min_size, max_size):
    min_size = as_positive_int(min_size, "min_size", minimum=2)
    max_size = as_positive_int(max_size, "max_size", minimum=min_size)
    return min_size, max_size


def _normalise(logw: np.ndarray) -> np.ndarray:
    w = np.exp(logw - logw.max())
    return w / w.sum()


def zipf_vectors(min_size: int = 2, max_size: int = 64, max_exponent: float = 3.0,
                 max_offset: float = 10.0, sort: bool = True):
    """Zipf–Mandelbrot π_k ∝ (k + q)^(−s), s ∈ [0, max_exponent], q ∈ [0, max_offset].

    ``sort=False`` returns the same law in a random order of the classes.
    """
    min_size, max_size = _sizes(min_size, max_size)
    as_positive(max_exponent, "max_exponent")
    as_positive(max_offset, "max_offset")
    return _zipf_vectors(min_size, max_size, max_exponent, max_offset, sort)


@st.composite
def _zipf_vectors(draw, min_size, max_size, max_exponent, max_offset, sort):
    K = draw(st.integers(min_size, max_size))
    s = draw(_floats(0.0, float(max_exponent)))
    q = draw(_floats(0.0, float(max_offset)))
    pi = _normalise(-s * np.log(np.arange(1, K + 1, dtype=np.float64) + q))
    if not sort:
        pi = pi[draw(st.permutations(range(K)))]
    return pi


def frequency_vectors(min_size: int = 2, max_size: int = 64, max_ratio: float = 1e6, kind: str = "any"):
    """A probability vector with all entries > 0 and π_max/π_min ≤ ``max_ratio``.

    kind: "arbitrary" (log-weights uniform in [−log max_ratio, 0], with optional ties
    and a single dominant class), "zipf" (``zipf_vectors`` clipped to the ratio), or
    "any" (either). ``max_ratio`` up to 1e12 gives extreme imbalance without subnormals.
    Arguments are checked when the strategy is built (ValueError naming the parameter).
    """
    min_size, max_size = _sizes(min_size, max_size)
    max_ratio = as_positive(max_ratio, "max_ratio")
    if not 1.0 <= max_ratio <= 1e12:
        raise ValueError(f"max_ratio must be in [1, 1e12], got max_ratio={max_ratio!r}")
    if kind not in ("any", "arbitrary", "zipf"):
        raise ValueError(f"kind must be 'any', 'arbitrary' or 'zipf', got kind={kind!r}")
    return _frequency_vectors(min_size, max_size, max_ratio, kind)


@st.composite
def _frequency_vectors(draw, min_size, max_size, max_ratio, kind):
    if kind == "any":
        kind = draw(st.sampled_from(["arbitrary", "zipf"]))
    span = float(np.log(max_ratio))
    if kind == "zipf":
        pi = draw(zipf_vectors(min_size, max_size))
        logw = np.maximum(np.log(pi), np.log(pi.max()) - span)
        return _normalise(logw)
    K = draw(st.integers(min_size, max_size))
    shape = draw(st.sampled_from(["uniform-log", "ties", "one-dominant"]))
    if shape == "ties":
        levels = draw(st.lists(_floats(-span, 0.0), min_size=1, max_size=3))
        logw = np.array(draw(st.lists(st.sampled_from(levels), min_size=K, max_size=K)))
    elif shape == "one-dominant":
        logw = np.full(K, -span)
        logw[draw(st.integers(0, K - 1))] = 0.0
    else:
        logw = np.array(draw(st.lists(_floats(-span, 0.0), min_size=K, max_size=K)))
    return _normalise(logw)


def weight_decays(min_value: float = 1e-4, max_value: float = 10.0):
    """λ log-uniform in [min_value, max_value] (both > 0)."""
    lo = as_positive(min_value, "min_value")
    hi = as_positive(max_value, "max_value")
    if hi < lo:
        raise ValueError(f"max_value must be >= min_value, got max_value={hi!r} < min_value={lo!r}")
    return _floats(float(np.log(lo)), float(np.log(hi))).map(lambda x: float(min(max(np.exp(x), lo), hi)))


def bigram_counts(max_contexts: int = 12, max_vocab: int = 12, max_count: int = 1000,
                  density: float | None = None, sparse: bool | None = None, square: bool = False):
    """Nonnegative integer counts (contexts × vocabulary); every row has a positive count.

    ``sparse=None`` draws dense ``np.ndarray`` or ``scipy.sparse.csr_matrix``;
    ``density`` (fraction of nonzero cells, drawn when None) makes sparse patterns;
    ``square=True`` makes contexts = vocabulary (a token predicts the next token).
    """
    max_contexts = as_positive_int(max_contexts, "max_contexts")
    max_vocab = as_positive_int(max_vocab, "max_vocab", minimum=2)
    max_count = as_positive_int(max_count, "max_count")
    if density is not None and not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density must be in (0, 1], got density={density!r}")
    return _bigram_counts(max_contexts, max_vocab, max_count, density, sparse, bool(square))


@st.composite
def _bigram_counts(draw, max_contexts, max_vocab, max_count, density, sparse, square):
    V = draw(st.integers(2, max_vocab))
    n_ctx = V if square else draw(st.integers(1, max_contexts))
    if density is None:
        density = draw(_floats(0.05, 1.0))
    mask = np.array(draw(st.lists(st.booleans().map(lambda _: True) if density >= 1.0 else
                                  _floats(0.0, 1.0).map(lambda u: u < density),
                                  min_size=n_ctx * V, max_size=n_ctx * V))).reshape(n_ctx, V)
    for i in range(n_ctx):  # every context is observed at least once
        if not mask[i].any():
            mask[i, draw(st.integers(0, V - 1))] = True
    # heavy-tailed counts: log-uniform in [1, max_count]
    logc = np.array(draw(st.lists(_floats(0.0, float(np.log(max_count))), min_size=n_ctx * V,
                                  max_size=n_ctx * V))).reshape(n_ctx, V)
    counts = np.where(mask, np.maximum(1, np.floor(np.exp(logc))), 0).astype(np.int64)
    if sparse is None:
        sparse = draw(st.booleans())
    return sp.csr_matrix(counts) if sparse else counts


def feature_sets(max_samples: int = 40, max_dim: int = 6, R: float | None = None, min_samples: int = 2):
    """(H, R): H of shape (n, d) with every row norm ≤ R (R drawn in [0.1, 10] if None)."""
    min_samples = as_positive_int(min_samples, "min_samples")
    max_samples = as_positive_int(max_samples, "max_samples", minimum=min_samples)
    max_dim = as_positive_int(max_dim, "max_dim")
    R = None if R is None else as_positive(R, "R")
    return _feature_sets(max_samples, max_dim, R, min_samples)


@st.composite
def _feature_sets(draw, max_samples, max_dim, R, min_samples):
    n = draw(st.integers(min_samples, max_samples))
    d = draw(st.integers(1, max_dim))
    R = draw(_floats(0.1, 10.0)) if R is None else R
    raw = np.array(draw(st.lists(_floats(-1.0, 1.0), min_size=n * d, max_size=n * d))).reshape(n, d)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    scale = np.array(draw(st.lists(_floats(0.0, 1.0), min_size=n, max_size=n)))[:, None]
    # (1 − 1e-12) keeps rounding from pushing a row norm above R
    H = np.where(norms > 0, raw / np.where(norms > 0, norms, 1.0) * scale * (R * (1 - 1e-12)), 0.0)
    H[np.abs(H) < 1e-12 * R] = 0.0  # no subnormal (or near-subnormal) entries
    return H, float(R)


@st.composite
def labelled_features(draw, n_classes: int | None = None, max_classes: int = 5, **feature_kwargs):
    """(H, y, R) with labels y in [0, K) and every class present at least once."""
    H, R = draw(feature_sets(**feature_kwargs))
    n = H.shape[0]
    K = n_classes if n_classes is not None else draw(st.integers(2, max(2, min(max_classes, n))))
    K = as_positive_int(K, "n_classes", minimum=2)
    if K > n:
        raise ValueError(f"n_classes must be <= number of samples {n}, got n_classes={K}")
    head = draw(st.permutations(range(K)))
    rest = draw(st.lists(st.integers(0, K - 1), min_size=n - K, max_size=n - K))
    y = np.array(list(head) + rest, dtype=np.int64)
    return H, y, R
