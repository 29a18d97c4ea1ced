"""The fuzz contract and its bookkeeping.

A *target* is a public function with a valid baseline call and, per parameter, a strategy
of bad or edge values. A fuzz call replaces one or two parameters of the baseline with drawn
values and classifies what happens:

* ``ok``: it returned, and every float in the result is finite, except in fields the target
  documents as NaN (e.g. the loss of a token never seen);
* ``named``: it raised ``ValueError`` whose message names a replaced parameter;
* a failure otherwise: ``silent_nan`` / ``non_finite`` (a NaN or inf outside the documented
  fields), ``unnamed_valueerror`` (the message names none of the replaced parameters),
  ``hang`` (no answer within the call budget), or the name of any other exception.

Counts go to :data:`RECORD`; with ``IMBALANCE_FUZZ_REPORT=path`` the session writes them as JSON.
``IMBALANCE_FUZZ_COLLECT=1`` records failures without failing the test (to measure a tree).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import signal
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

RECORD: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
EXAMPLES: dict[str, dict[str, str]] = collections.defaultdict(dict)  # first failing call per (target, kind)
COLLECT = os.environ.get("IMBALANCE_FUZZ_COLLECT") == "1"
# A call that spends more CPU time than this on a small input is a hang; one that neither
# answers nor spends it within WALL_BUDGET_S (a wait that never ends) is one too. Counting CPU
# time, not the clock, keeps a loaded machine's slowness from passing for a hang.
CALL_BUDGET_S = 20
WALL_BUDGET_S = 300


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    call: Callable[..., Any]
    valid: dict
    edges: dict                      # parameter -> strategy of bad/edge values
    nan_fields: frozenset = frozenset()   # result paths allowed to hold NaN (documented)
    inf_fields: frozenset = frozenset()   # result paths allowed to hold ±inf (documented)
    aliases: dict = dataclasses.field(default_factory=dict)  # parameter -> other names its error may use


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(cpu_seconds, wall_seconds):
    """Raise ``_Timeout`` in the block after ``cpu_seconds`` of this process's CPU time or
    ``wall_seconds`` of the clock, whichever comes first (where the platform has the timers)."""
    if not hasattr(signal, "SIGPROF") or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise _Timeout()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    signal.setitimer(signal.ITIMER_REAL, wall_seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, h in old.items():
            signal.signal(sig, h)


def _walk(value, path=""):
    """Yield (path, float array) for every float-valued leaf of a result."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _walk(getattr(value, f.name), f.name if not path else f"{path}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}[{k}]")
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    elif sp.issparse(value):
        yield path, np.asarray(value.data, dtype=np.float64)
    elif isinstance(value, (float, np.floating, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind in "fc":
            yield path, arr


def _base(path: str) -> str:
    return path.split("[")[0]


def classify(target: Target, kwargs: dict, replaced: list[str]) -> tuple[str, str]:
    """(kind, detail) of one call."""
    try:
        with _deadline(CALL_BUDGET_S, WALL_BUDGET_S), warnings.catch_warnings():
            # as the project's pytest configuration: a RuntimeWarning raised in imbalance is an error
            warnings.filterwarnings("error", category=RuntimeWarning, module=r"imbalance(\.|$)")
            out = target.call(**kwargs)
    except _Timeout:
        return "hang", f"no answer within {CALL_BUDGET_S} s of CPU time or {WALL_BUDGET_S} s"
    except ValueError as e:
        msg = str(e)
        names = [n for r in replaced for n in (r, *target.aliases.get(r, ()))]
        if any(n in msg for n in names):
            return "named", ""
        return "unnamed_valueerror", msg[:300]
    except SystemExit as e:  # argparse reports bad command lines this way (exit status 2)
        return ("named", "") if e.code == 2 else (f"SystemExit({e.code})", "")
    except Exception as e:  # noqa: BLE001 - every other exception is a finding
        return type(e).__name__, f"{type(e).__name__}: {str(e)[:300]}"
    for path, arr in _walk(out):
        if np.isnan(arr).any() and _base(path) not in target.nan_fields:
            return "silent_nan", path
        if np.isinf(arr).any() and _base(path) not in target.inf_fields:
            return "non_finite", path
    return "ok", ""


def describe(kwargs: dict) -> str:
    def short(v):
        if isinstance(v, np.ndarray):
            return f"array(shape={v.shape}, dtype={v.dtype}, {np.array2string(v.ravel()[:6], precision=3)})"
        if sp.issparse(v):
            return f"{type(v).__name__}(shape={v.shape}, data={v.data[:6]})"
        text = repr(v)
        return text if len(text) < 120 else text[:117] + "..."
    return ", ".join(f"{k}={short(v)}" for k, v in kwargs.items())


# ---------------------------------------------------------------- edge-value strategies

NAN, INF = float("nan"), float("inf")

bad_scalars = st.sampled_from([NAN, INF, -INF, 0.0, -0.0, -1.0, -1e300, 1e300, 5e-324, True, None, "abc", "1",
                               [], [1.0, 2.0], complex(1, 1), np.float32(0.5), np.int64(-3), 2 ** 63])
positive_reals = st.one_of(st.floats(1e-300, 1e300), st.sampled_from([np.float32(0.25), np.int64(2), 1]))
any_reals = st.one_of(bad_scalars, positive_reals)


def _noncontiguous(a):
    a = np.asarray(a, dtype=np.float64)
    out = np.zeros(2 * a.size)
    out[::2] = a
    return out[::2]


bad_vectors = st.one_of(
    st.sampled_from([[], [NAN, 0.5], [INF, 1.0], [-0.1, 1.1], [[0.5, 0.5]], ["a", "b"], [0.0, 0.0], [1.0],
                     [0.3, 0.3], [1e-300, 1.0], [1e308, 1e308], np.array([True, False]), np.array([1, 2]),
                     np.array([1 + 1j, 1.0]), np.array([None, 1.0], dtype=object), np.zeros((2, 2)), "abc", None, 3.0]),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=6),
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6).map(lambda v: np.asarray(v, dtype=np.float32)),
    st.lists(st.floats(0.01, 1.0), min_size=2, max_size=6).map(_noncontiguous),
)


def _explicit_zeros():
    m = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]))
    m.data[0] = 0.0  # an explicit zero stored in the matrix
    return m


def _csr_negative():
    m = sp.csr_matrix(np.eye(3))
    m.data[1] = -1.0
    return m


bad_matrices = st.one_of(
    st.sampled_from([np.zeros((3, 3)), np.array([1.0, 2.0]), np.ones((2, 2, 2)), np.zeros((0, 0)), np.zeros((3, 0)),
                     np.array([[NAN, 1.0], [1.0, 1.0]]), np.array([[INF, 1.0], [1.0, 1.0]]),
                     np.array([[-1.0, 2.0], [1.0, 1.0]]), np.array([[1e308, 1e308], [1e308, 1.0]]),
                     np.array([["a", "b"], ["c", "d"]]), np.ones((3, 1)), np.ones((1, 3)), "abc", None, 2.0]),
    st.just(None).map(lambda _: _explicit_zeros()),
    st.just(None).map(lambda _: _csr_negative()),
    st.just(None).map(lambda _: sp.coo_matrix(np.array([[0.0, 0.0], [0.0, 0.0]]))),
    st.just(None).map(lambda _: sp.csc_matrix(np.eye(3, dtype=np.float32))),
    st.just(None).map(lambda _: np.asarray(np.arange(1.0, 17.0).reshape(4, 4)[:, ::2])),
    st.just(None).map(lambda _: np.eye(3, dtype=np.int64) * 5),
)

bad_sizes = st.sampled_from([0, 1, -1, 2.5, 3.0, "3", None, True, NAN, INF, 10 ** 15, 2 ** 70, np.int64(4), [3]])

bad_choices = st.sampled_from(["", "SGD", "adam", None, 3, ["sgd"], "sgd ", "log10", "types", "mass"])


def lam_values():
    return st.one_of(bad_scalars, bad_vectors, st.sampled_from([np.array([1e-300, 1e300]), [1.0, 1.0, 1.0],
                                                                np.float32(0.1), np.array([0.1], dtype=np.float32)]))


def summary() -> dict:
    """{target: {kind: count}} and totals."""
    totals: collections.Counter = collections.Counter()
    for counts in RECORD.values():
        totals.update(counts)
    return {"calls": int(sum(totals.values())), "by_kind": dict(totals),
            "by_target": {k: dict(v) for k, v in sorted(RECORD.items())},
            "examples": {k: dict(v) for k, v in sorted(EXAMPLES.items())}}


def is_failure(kind: str) -> bool:
    return kind not in ("ok", "named", "skipped")


def finite_or_nan(x) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isfinite(x))
