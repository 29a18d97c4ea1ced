"""Vectorised safeguarded Newton for many independent monotone scalar equations."""

from __future__ import annotations

import numpy as np

EPS = np.finfo(np.float64).eps


def increasing_root(fun, lo, hi, x0=None, *, rtol=4 * EPS, atol=0.0, maxiter=300):
    """Solve f_i(x_i) = 0 for increasing f_i, one per element, with a bracket.

    ``fun(x, idx)`` returns ``(f, df)`` or ``(f, df, fscale)`` for the elements ``idx``
    at points ``x``; with ``fscale`` (the magnitude of the terms that make up f), an
    element whose |f| is at the rounding floor 4·eps·fscale is done.
    ``lo``/``hi`` must bracket every root (f(lo) <= 0 <= f(hi)); a Newton step that
    leaves the bracket, or fails to halve |f|, is replaced by bisection, so the
    iteration converges even for stiff or discontinuous f (then to the generalised
    root where f changes sign).
    """
    lo = np.array(lo, dtype=np.float64, copy=True)
    hi = np.array(hi, dtype=np.float64, copy=True)
    x = 0.5 * (lo + hi) if x0 is None else np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    x = np.array(x, copy=True)
    n = x.size
    active = np.arange(n)
    fprev = np.full(n, np.inf)
    for _ in range(maxiter):
        if active.size == 0:
            return x
        xa = x[active]
        out = fun(xa, active)
        f, df = out[0], out[1]
        at_floor = np.abs(f) <= 4 * EPS * out[2] if len(out) > 2 else np.zeros(f.shape, dtype=bool)
        lo_a = np.where(f <= 0, xa, lo[active])
        hi_a = np.where(f >= 0, xa, hi[active])
        lo[active], hi[active] = lo_a, hi_a
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = xa - f / df
        good = np.isfinite(newton) & (newton > lo_a) & (newton < hi_a) & (np.abs(f) <= 0.5 * fprev[active])
        # the first step has no previous |f|: accept any in-bracket Newton step
        xn = np.where(good, newton, 0.5 * (lo_a + hi_a))
        fprev[active] = np.abs(f)
        scale = np.maximum(np.abs(xn), np.abs(xa))
        done = (f == 0) | at_floor | (np.abs(xn - xa) <= rtol * scale + atol) | (hi_a - lo_a <= rtol * scale + atol)
        x[active] = np.where((f == 0) | at_floor, xa, xn)
        active = active[~done]
    raise RuntimeError(f"increasing_root did not converge for {active.size} of {n} equations in {maxiter} iterations")
