"""Unconstrained L-BFGS as a step generator (used by :mod:`imbalance.theory.nuclear`)."""

from __future__ import annotations

import numpy as np

__all__ = ["lbfgs_steps"]


def lbfgs_steps(fun, x, m, metric):
    """L-BFGS (two-loop recursion, Armijo backtracking) as a generator yielding the iterate
    after every step, so the caller can test the certificate without losing the memory.
    Returns when the line search cannot decrease f any more (rounding level).
    scipy's L-BFGS-B spent 75 % of the solve time in its bound-constrained bookkeeping on
    2e5 unconstrained variables (UFM, K = 300)."""
    f, g = fun(x)
    S, Yk, rho = [], [], []
    while True:
        q = -g
        alpha = []
        for s_, y_, r_ in zip(reversed(S), reversed(Yk), reversed(rho)):
            a = r_ * (s_ @ q)
            q -= a * y_
            alpha.append(a)
        D = metric[0]  # diagonal curvature estimate, refreshed by the caller
        q /= D
        if S:
            q *= (S[-1] @ Yk[-1]) / (Yk[-1] @ (Yk[-1] / D))
        for (s_, y_, r_), a in zip(zip(S, Yk, rho), reversed(alpha)):
            q += (a - r_ * (y_ @ q)) * s_
        gd = g @ q
        if not gd < 0:
            S, Yk, rho = [], [], []
            q = -g / D
            gd = g @ q
        t = 1.0
        while True:
            fn, gn = fun(x + t * q)
            if fn <= f + 1e-4 * t * gd:
                break
            # approximate Wolfe (Hager & Zhang 2005, eq. 4.1): near the optimum f is flat to
            # rounding, so accept a step the directional derivative vouches for
            if fn <= f + 1e-12 * abs(f) and 0.9 * gd <= gn @ q <= -0.8 * gd:
                break
            t *= 0.25 if not fn <= f else 0.5
            if t * np.sqrt(-gd) < 1e-16 * (1 + np.linalg.norm(x)):
                return
        s_, y_ = t * q, gn - g
        sy = s_ @ y_
        if sy > 1e-16 * np.sqrt((s_ @ s_) * (y_ @ y_)):
            S.append(s_), Yk.append(y_), rho.append(1.0 / sy)
            if len(S) > m:
                S.pop(0), Yk.pop(0), rho.pop(0)
        x, f, g = x + s_, fn, gn
        yield x
