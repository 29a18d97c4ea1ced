"""Input checks shared by every public function.

Each check raises ``ValueError`` naming the parameter and the offending value, so a
caller never sees a NaN or a traceback from deep inside numpy.
"""

from __future__ import annotations

import contextlib
import numbers

import numpy as np
import scipy.sparse as sp

__all__ = [
    "as_frequencies",
    "as_lams",
    "as_lam_pair",
    "drop_lam_axis",
    "as_distribution",
    "as_positive",
    "as_count_matrix",
    "as_choice",
    "as_positive_int",
    "as_fraction",
    "as_token_ids",
    "as_real_array",
    "as_real",
    "allocation",
]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_real_array(value, name: str, what: str = "a numeric array") -> np.ndarray:
    """``value`` as a float64 array; strings, complex numbers and non-numeric objects are
    refused (complex values would otherwise lose their imaginary part without a word)."""
    if isinstance(value, (str, bytes)) or value is None:
        raise ValueError(f"{name} must be {what}, got {name}={_short(value)}")
    try:
        raw = np.asarray(value)
        if raw.dtype.kind == "c" or (raw.dtype.kind == "O" and any(isinstance(v, complex) for v in raw.ravel())):
            raise TypeError
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be {what}, got {name}={_short(value)}") from None
    return arr


def as_real(value, name: str) -> float:
    """A finite real scalar (bools, strings and complex numbers refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number, got {name}={_short(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    return value


@contextlib.contextmanager
def allocation(name: str, value):
    """Turn a failed allocation (a size far beyond memory, or beyond numpy's index range)
    into a ``ValueError`` naming the parameter that asked for it."""
    try:
        yield
    except MemoryError:
        raise ValueError(f"{name}={_short(value)} asks for more memory than is available") from None
    except (ValueError, OverflowError) as e:
        text = str(e)
        if any(k in text.lower() for k in ("maximum allowed", "too big", "too large", "more memory")) \
                or isinstance(e, OverflowError):
            raise ValueError(f"{name}={_short(value)} is too large to allocate ({text})") from None
        raise


def as_lams(lam, name: str = "lam", *, allow_zero: bool = False) -> tuple[np.ndarray, bool]:
    """Return (1-D float64 array of weight decays, is_scalar).

    A scalar gives a length-1 array and ``is_scalar=True``; results then drop the
    leading λ axis (:func:`drop_lam_axis`). Every value must be finite and > 0
    (>= 0 with ``allow_zero``, for simulations, where λ = 0 is a run like any other).
    """
    what = "non-negative" if allow_zero else "positive"
    if isinstance(lam, (bool, np.bool_)):
        raise ValueError(f"{name} must be a {what} number or 1-D array, got {name}={_short(lam)}")
    arr = as_real_array(lam, name, f"a {what} number or 1-D array")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {arr.shape}")
    scalar = arr.ndim == 0
    arr = np.atleast_1d(arr)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got {name}={_short(lam)}")
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if bad.any():
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {name}={arr[bad][0]!r}")
    return arr, scalar


def as_lam_pair(lam_a, name_a: str, lam_b, name_b: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Two weight decays (each a scalar or 1-D) broadcast to one λ path.

    Returns (a, b, is_scalar) with a, b 1-D float64 of equal length; ``is_scalar`` when
    both were scalars.
    """
    a, sa = as_lams(lam_a, name_a)
    b, sb = as_lams(lam_b, name_b)
    if a.size != b.size and min(a.size, b.size) != 1:
        raise ValueError(f"{name_a} and {name_b} must have the same length or be scalars, "
                         f"got lengths {a.size} and {b.size}")
    L = max(a.size, b.size)
    return np.broadcast_to(a, (L,)).copy(), np.broadcast_to(b, (L,)).copy(), sa and sb


def drop_lam_axis(fields: dict, scalar: bool) -> dict:
    """The counterpart of :func:`as_lams` for results: when λ was a scalar, drop the
    leading λ axis of every array field (a length-1 vector becomes a float)."""
    if not scalar:
        return fields
    return {k: (float(v[0]) if np.ndim(v) == 1 else v[0]) for k, v in fields.items()}


def as_distribution(pi, name: str = "pi", min_size: int = 2, atol: float = 1e-9) -> np.ndarray:
    """A finite, non-negative 1-D float64 vector summing to 1 (within ``atol``)."""
    arr = as_real_array(pi, name, "a 1-D array of probabilities")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size < min_size:
        raise ValueError(f"{name} needs at least {min_size} classes, got {arr.size}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {name}[{int(np.flatnonzero(~np.isfinite(arr))[0])}]="
                         f"{arr[~np.isfinite(arr)][0]!r}")
    if (arr < 0).any():
        i = int(np.flatnonzero(arr < 0)[0])
        raise ValueError(f"{name} must be non-negative, got {name}[{i}]={arr[i]!r}")
    with np.errstate(over="ignore"):
        total = float(arr.sum())
    if not abs(total - 1.0) <= atol:
        raise ValueError(f"{name} must sum to 1 (within {atol:g}), got sum={total!r}")
    return arr


def as_frequencies(freq, name: str = "pi", size: int | None = None) -> np.ndarray:
    """Non-negative counts or weights with a positive sum (of length ``size`` if given),
    returned normalised to a distribution."""
    arr = as_real_array(freq, name, "a 1-D array of counts or frequencies")
    if arr.ndim != 1 or (size is not None and arr.shape != (size,)):
        want = "a 1-D array" if size is None else f"shape ({size},) to match the token axis"
        raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite and non-negative, got {name}[{i}]={arr[i]!r}")
    if arr.size == 0 or not arr.max() > 0:
        raise ValueError(f"{name} must have a positive sum, got {name}={_short(freq)}")
    with np.errstate(over="ignore"):
        total = arr.sum()
    if not np.isfinite(total):  # huge counts: rescale before summing
        arr = arr / arr.max()
        total = arr.sum()
    return arr / total


def as_positive(value, name: str) -> float:
    """A finite scalar > 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a positive number, got {_short(value)}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {name}={value!r}")
    return value


def as_nonnegative(value, name: str) -> float:
    """A finite scalar >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a non-negative number, got {_short(value)}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {name}={value!r}")
    return value


def as_positive_int(value, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {_short(value)}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value}")
    return value


def as_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {name}={_short(value)}")
    return value.lower()


def as_count_matrix(counts, name: str = "counts", min_vocab: int = 2) -> sp.csr_matrix:
    """A (contexts × vocabulary) matrix of finite, non-negative counts as float64 CSR.

    Explicit zeros are dropped and indices sorted; dense input is converted without
    densifying anything else.
    """
    if sp.issparse(counts):
        if counts.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real counts, got dtype {counts.dtype}")
        mat = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    else:
        arr = as_real_array(counts, name, "a 2-D array or scipy.sparse matrix")
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (contexts × vocabulary), got shape {arr.shape}")
        mat = sp.csr_matrix(arr)
    if mat.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {mat.shape}")
    if mat.shape[1] < min_vocab:
        raise ValueError(f"{name} needs a vocabulary of at least {min_vocab} tokens, got shape {mat.shape}")
    data = mat.data
    if not np.isfinite(data).all():
        raise ValueError(f"{name} must be finite, got a value {data[~np.isfinite(data)][0]!r}")
    if (data < 0).any():
        raise ValueError(f"{name} must be non-negative, got a value {data[data < 0][0]!r}")
    mat.eliminate_zeros()
    mat.sum_duplicates()
    mat.sort_indices()
    if mat.nnz == 0:
        raise ValueError(f"{name} must contain at least one positive count")
    with np.errstate(over="ignore"):
        total = mat.data.sum()
    if not np.isfinite(total):
        raise ValueError(f"{name} must have a finite total, got sum={float(total)!r}: divide the counts by a constant")
    return mat


def as_fraction(value, name: str) -> float:
    """A finite scalar strictly between 0 and 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in (0, 1), got {_short(value)}")
    value = float(value)
    if not np.isfinite(value) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {name}={value!r}")
    return value


def as_token_ids(ids, vocab_size: int, name: str = "ids", min_length: int = 1) -> np.ndarray:
    """A 1-D int64 array of at least ``min_length`` token ids in [0, vocab_size)."""
    arr = np.asarray(ids)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"{name} must be a 1-D integer array, got dtype {arr.dtype}, shape {arr.shape}")
    if arr.size < min_length:
        raise ValueError(f"{name} must hold at least {min_length} tokens, got {arr.size}")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = arr[(arr < 0) | (arr >= vocab_size)][0]
        raise ValueError(f"{name} must lie in [0, vocab_size={vocab_size}), got a token {int(bad)} "
                         f"(range [{int(arr.min())}, {int(arr.max())}])")
    return arr.astype(np.int64, copy=False)
