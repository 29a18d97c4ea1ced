"""High-precision references, written independently of imbalance.theory.

mpmath at 40 digits: Lambert W of exp(x) (mpmath has no overflow) and a Newton
iteration on the normaliser that is safeguarded by convexity, not by anything the
float64 solver computes.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

DPS = 40


def _omega(x):
    # Wright omega for real x: W0(exp(x)); for very negative x, exp(x) is tiny and
    # W0(y) = y − y² + ..., which mpmath handles at full precision as well
    return mp.lambertw(mp.exp(x)).real


def unigram_reference(pi, lam):
    """(probs, logits, loss) of argmin −Σπ log softmax(b) + (λ/2)‖b‖², as mpf lists.

    p_k = λ ω(π_k/λ − t), Σ p = 1. G(t) = Σ λ ω(π_k/λ − t) is convex and decreasing,
    so Newton from any t with G(t) >= 1 increases monotonically to the root. A lower
    bound: Σ b = 0 gives log Z >= log K (Jensen), and t = log Z + log λ.
    """
    with mp.workdps(DPS):
        pi = [mp.mpf(float(v)) for v in pi]
        total = mp.fsum(pi)
        pi = [v / total for v in pi]  # the problem is posed for Σπ = 1 exactly
        lam = mp.mpf(float(lam))
        K = len(pi)
        t = mp.log(lam) + mp.log(K)
        x = [v / lam for v in pi]
        tol = mp.mpf(10) ** (-DPS + 5)
        for _ in range(500):
            w = [_omega(xk - t) for xk in x]
            G = lam * mp.fsum(w)
            dG = -lam * mp.fsum(wk / (1 + wk) for wk in w)
            # Newton on log G is exact for G ∝ e^{-t}; accept it only if it stays left of
            # the root (G >= 1 there), else take the always-safe Newton step on G
            cand = t - mp.log(G) * G / dG
            if cand > t:
                Gc = lam * mp.fsum(_omega(xk - cand) for xk in x)
                if Gc >= 1:
                    t = cand
                    if abs(Gc - 1) < tol:
                        break
                    continue
            step = -(G - 1) / dG
            t += step
            if abs(G - 1) < tol or abs(step) < tol * (1 + abs(t)):
                break
        else:
            raise RuntimeError("reference did not converge")
        w = [_omega(xk - t) for xk in x]
        p = [lam * wk for wk in w]
        norm = mp.fsum(p)
        p = [v / norm for v in p]
        b = [(qk - pk) / lam for pk, qk in zip(p, pi)]
        loss = [-mp.log(v) for v in p]
        return p, b, loss


def to_float(values) -> np.ndarray:
    return np.array([float(v) for v in values])
