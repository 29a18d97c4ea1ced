"""Frequency laws and frequency buckets."""

from __future__ import annotations

import numpy as np

from ._validate import allocation, as_choice, as_nonnegative, as_positive_int, as_real, as_real_array

__all__ = ["zipf_pmf", "frequency_buckets"]


def zipf_pmf(K: int, s: float, q: float = 0.0) -> np.ndarray:
    """Zipf–Mandelbrot law π_k ∝ (k + q)^(-s), k = 1..K, as float64 summing to 1.

    >>> zipf_pmf(3, 1.0).round(4).tolist()
    [0.5455, 0.2727, 0.1818]
    """
    K = as_positive_int(K, "K", minimum=2)
    s = as_nonnegative(s, "s")
    q = as_real(q, "q")
    if q <= -1:
        raise ValueError(f"q must be finite and > -1, got q={q!r}")
    # log-space keeps large s (e.g. s = 50) from underflowing to an all-zero vector
    with allocation("K", K):
        logw = -s * np.log(np.arange(1, K + 1, dtype=np.float64) + q)
    w = np.exp(logw - logw.max())
    return w / w.sum()


def frequency_buckets(pi, scheme: str = "log3", n_groups: int = 10) -> np.ndarray:
    """Integer bucket id per token, 0 = most frequent bucket; tokens with π = 0 get -1.

    ``pi``: frequencies or counts (any positive scale).

    ``"log3"``: powers-of-3 bins of relative frequency as in Pinto et al. (2024,
    arXiv 2410.11985): bucket b holds tokens with π/max(π) in (3^-(b+1), 3^-b].

    ``"equal_mass"``: the split of Kunstner et al. (2024, arXiv 2402.19449; their
    ``split_classes_by_frequency``): sort the tokens by decreasing frequency, accumulate
    their normalised mass, and close group g after the first token whose cumulative mass
    (at the end of its interval) reaches (g + 1)/``n_groups`` — the crossing token stays in
    the earlier group. Token t therefore lands in group #{g ≥ 1 : g/n_groups ≤ mass before t}.
    A group that no token opens stays empty, so ids may skip a value when one token holds
    more than 1/``n_groups`` of the mass (at most 2**24 groups). Equal frequencies are ordered by token index (a
    stable sort), so tied tokens can straddle a group boundary: four equal frequencies in
    two groups give [0, 0, 1, 1] (the second token's interval ends exactly at ½ and
    closes group 0).

    >>> frequency_buckets([1, 1, 1, 1], "equal_mass", n_groups=2).tolist()
    [0, 0, 1, 1]
    >>> frequency_buckets([9, 3, 1, 0]).tolist()
    [0, 1, 2, -1]
    """
    arr = as_real_array(pi, "pi", "a 1-D array of frequencies")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"pi must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"pi must be finite and non-negative, got {arr[~(np.isfinite(arr) & (arr >= 0))][0]!r}")
    if arr.max() <= 0:
        raise ValueError(f"pi must have at least one positive entry, got pi={pi!r:.80}")
    scheme = as_choice(scheme, "scheme", {"log3", "equal_mass"})
    if scheme == "equal_mass":
        n_groups = as_positive_int(n_groups, "n_groups")
        if n_groups > 2 ** 24:
            raise ValueError(f"n_groups must be <= 2**24, got n_groups={n_groups}")
    out = np.full(arr.shape, -1, dtype=np.int64)
    pos = arr > 0
    out[pos] = _log3_buckets(arr[pos]) if scheme == "log3" else _equal_mass_buckets(arr[pos], n_groups)
    return out


def _log3_buckets(freq: np.ndarray) -> np.ndarray:
    """Powers-of-3 bucket of each positive frequency: b with 3^-(b+1) < freq/max(freq) <= 3^-b."""
    logrel = np.log(freq) - np.log(freq.max())  # in logs: a subnormal frequency does not underflow
    b = np.floor(-logrel / np.log(3.0)).astype(np.int64)
    # the logarithm can land an ulp on the wrong side of a power of 3: settle the
    # boundary by the comparisons that define the bin, 3^-(b+1) < rel <= 3^-b
    with np.errstate(under="ignore"):
        rel = np.exp(logrel)
        low = 3.0 ** -b.astype(np.float64)
    normal = rel > 0  # where rel underflows the logarithm alone decides
    b = np.where(normal & (rel > low), b - 1, b)
    with np.errstate(under="ignore"):
        high = 3.0 ** -(b + 1).astype(np.float64)
    return np.where(normal & (rel <= high), b + 1, b)


def _equal_mass_buckets(freq: np.ndarray, n_groups: int) -> np.ndarray:
    """Kunstner et al.'s equal-mass group of each positive frequency (see ``frequency_buckets``):
    token t joins group #{g ≥ 1 : g·S ≤ n_groups·(mass before t)}, S the total mass."""
    # scaling by a power of two is exact, so integer counts keep exact sums (below 2**53) and a
    # token that ends exactly on a breakpoint closes its group whatever the rounding of g/n_groups
    scaled = np.ldexp(freq, -np.frexp(freq.max())[1])  # (n,) in (0, 1]
    order = np.argsort(-scaled, kind="stable")
    cum = np.cumsum(scaled[order])                            # mass at the end of each token's interval
    before = np.concatenate([[0.0], cum[:-1]])               # mass before each token
    with allocation("n_groups", n_groups):
        thresholds = np.arange(1, n_groups, dtype=np.float64) * cum[-1]  # (n_groups - 1,) g·S
    groups = np.empty(freq.size, dtype=np.int64)
    groups[order] = np.searchsorted(thresholds, before * n_groups, side="right")
    return groups
