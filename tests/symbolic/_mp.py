"""High-precision (mpmath) evaluation of the symbolic closed forms.

Used as an independent reference: it evaluates the sympy expressions of
imbalance.symbolic at 50 digits, so rounding never limits an asymptotic check.
"""

from __future__ import annotations

import functools

import mpmath as mp
import sympy as sp

from imbalance.symbolic import unigram as U

DPS = 50


def _omega(x):
    return mp.lambertw(mp.exp(x)).real


@functools.cache
def _omega_probs(K):
    sol = U.unigram_omega_solution(K)
    pis, _, lam_s = U.unigram_symbols(K)
    return sp.lambdify([pis, lam_s, U.t], sol["p"], modules=[{"wright_omega": _omega}, "mpmath"])


def unigram_mp(pi, lam, dps: int = DPS):
    """(b, p, π) of the T1 minimiser from the Wright-omega form, at ``dps`` digits."""
    K = len(pi)
    f_p = _omega_probs(K)
    with mp.workdps(dps):
        pi_mp = [mp.mpf(float(x)) for x in pi]
        total = mp.fsum(pi_mp)
        pi_mp = [x / total for x in pi_mp]
        lam_mp = mp.mpf(float(lam))
        def g(t):  # decreasing in t
            return mp.fsum(f_p(pi_mp, lam_mp, t)) - 1

        # bracket: t = log λ + log Σ e^b, and |b_k| ≤ 1/λ since λ b = π − p
        lo = mp.log(lam_mp) + mp.log(K) - 2 / lam_mp - 1
        hi = mp.log(lam_mp) + mp.log(K) + 2 / lam_mp + 1
        t = mp.findroot(g, (lo, hi), solver="anderson", tol=mp.mpf(10) ** (-dps + 5))
        p = f_p(pi_mp, lam_mp, t)
        b = [(x - y) / lam_mp for x, y in zip(pi_mp, p)]
    return b, p, pi_mp


def margin_mp(c, K, dps: int = DPS):
    """Root m > 0 of m(eᵐ + K − 1) = c (T2 deterministic margin, c = K κ)."""
    with mp.workdps(dps):
        c = mp.mpf(c)
        def f(m):
            return m * (mp.exp(m) + K - 1) - c

        hi = mp.mpf(1) + mp.log(1 + c)  # f(hi) > 0 > f(0)
        return mp.findroot(f, (mp.mpf(0), hi), solver="illinois", tol=mp.mpf(10) ** (-2 * dps + 10))


def bisect_decreasing(f, lo, hi, iterations: int = 200):
    """Root of a decreasing f on [lo, hi] (f(lo) > 0 > f(hi)) by bisection: error ≤ (hi − lo)/2^iterations."""
    lo, hi = mp.mpf(lo), mp.mpf(hi)
    if not (f(lo) > 0 > f(hi)):
        raise ValueError(f"no sign change on [{lo}, {hi}]")
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
