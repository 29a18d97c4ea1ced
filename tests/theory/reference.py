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


def _omega_ld(x):
    """Wright ω in numpy longdouble (80-bit on x86-64): Newton on e^v + v = x, v = log ω.

    g(v) = e^v + v − x is convex and increasing, and v0 = min(x, log x) (x > 1) is an
    upper bound of the root, so Newton decreases monotonically to it.
    """
    x = np.asarray(x, dtype=np.longdouble)
    v = np.where(x > 1, np.minimum(x, np.log(np.maximum(x, 1))), x)
    for _ in range(200):
        ev = np.exp(v)
        step = (ev + v - x) / (ev + 1)
        v = v - step
        if np.all(np.abs(step) <= np.finfo(np.longdouble).eps * 4 * (1 + np.abs(v))):
            break
    else:
        raise RuntimeError("longdouble omega did not converge")
    return np.exp(v)


def unigram_reference_ld(pi, lam):
    """(probs, loss) as float64 arrays from a longdouble computation, for large K.

    Same equations as ``unigram_reference`` (Newton on the convex G from the left),
    pairwise summation (np.sum) so the sum of 1e5 terms keeps ~1e-18 accuracy.
    """
    pi = np.asarray(pi, dtype=np.longdouble)
    pi = pi / np.sum(pi)
    lam = np.longdouble(lam)
    K = pi.size
    x = pi / lam
    t = np.log(lam) + np.log(np.longdouble(K))
    eps = np.finfo(np.longdouble).eps
    for _ in range(500):
        w = _omega_ld(x - t)
        G = lam * np.sum(w)
        dG = -lam * np.sum(w / (1 + w))
        step = -(G - 1) / dG
        t = t + step
        if abs(step) <= 8 * eps * (1 + abs(t)) or abs(G - 1) <= 8 * eps:
            break
    else:
        raise RuntimeError("longdouble reference did not converge")
    p = lam * _omega_ld(x - t)
    p = p / np.sum(p)
    return p.astype(np.float64), (-np.log(p)).astype(np.float64)
