"""Per-token loss ceilings from dual feasibility (T9), closed form, vectorised over λ.

At the optimum of the UFM / factored-LM nuclear-norm program the loss gradient has spectral
norm ≤ μ (subgradient condition of μ‖·‖_*), so each of its rows, (w_x/s_x)(p_x − q_x), has
Euclidean norm ≤ μ. Because p_x and q_x are probability vectors, a deficit δ on one coordinate
costs ‖p_x − q_x‖ ≥ δ√(V/(V − 1)) (proofs/T9_loss_ceilings.md), so

* UFM (with or without a bias; w = π, s = √π, q = e_k):
  ℓ_k ≤ −log(1 − μ√((K − 1)/(K π_k))), μ = √(λ_Wλ_H);
* factored bigram LM, untied (w = P(x), s = 1): p(v|x) ≥ q(v|x) − (μ/P(x))√((V − 1)/V),
  μ = √(λ_Wλ_E), and the mean loss of target v is at most the count-weighted mean of
  −log of that floor over the contexts that precede v.

A ceiling is +∞ where the floor is ≤ 0 (the bound says nothing there): rare tokens get no
ceiling, which is the rigorous half of "rare tokens lose".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._validate import as_count_matrix, as_distribution
from .nuclear import broadcast_lams

__all__ = ["LossCeiling", "ufm_loss_ceiling", "factored_loss_ceiling"]


@dataclass(frozen=True)
class LossCeiling:
    """``ceiling[..., v]`` ≥ the optimal per-token loss of v (+∞: no bound, NaN: v never a
    target); ``mu`` the penalty weight; a 1-D λ path adds a leading axis to both."""

    lam_w: np.ndarray | float
    lam_2: np.ndarray | float
    mu: np.ndarray | float
    ceiling: np.ndarray


def _neg_log_floor(floor):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(floor > 0, -np.log(np.where(floor > 0, floor, 1.0)), np.inf)


def ufm_loss_ceiling(pi, lam_w, lam_h) -> LossCeiling:
    """ℓ_k ≤ −log(1 − μ√((K − 1)/(K π_k))) at the UFM optimum (T9), with or without a bias."""
    pi = as_distribution(pi, "pi")
    if (pi <= 0).any():
        i = int(np.flatnonzero(pi <= 0)[0])
        raise ValueError(f"pi must be > 0 for every class, got pi[{i}]={pi[i]!r}")
    lw, lh, scalar = broadcast_lams(lam_w, "lam_w", lam_h, "lam_h")
    K = pi.size
    mu = np.sqrt(lw * lh)  # (L,)
    ceiling = _neg_log_floor(1 - mu[:, None] * np.sqrt((K - 1) / (K * pi))[None, :])  # (L, K)
    if scalar:
        return LossCeiling(float(lw[0]), float(lh[0]), float(mu[0]), ceiling[0])
    return LossCeiling(lw, lh, mu, ceiling)


def factored_loss_ceiling(counts, lam_w, lam_e) -> LossCeiling:
    """Ceiling on the mean CE of each target token v at the untied factored-LM optimum (T9):
    Σ_x C_xv (−log(q(v|x) − (μ/P(x))√((V−1)/V))) / Σ_x C_xv, +∞ if any floor is ≤ 0."""
    C = sp.coo_matrix(as_count_matrix(counts, "counts"))
    lw, le, scalar = broadcast_lams(lam_w, "lam_w", lam_e, "lam_e")
    n, V = C.shape
    N = C.sum()
    row = np.bincount(C.row, weights=C.data, minlength=n)  # N·P(x)
    col = np.bincount(C.col, weights=C.data, minlength=V)  # occurrences of v as a target
    q = C.data / row[C.row]  # q(v|x) on the observed pairs
    mu = np.sqrt(lw * le)  # (L,)
    slack = mu[:, None] * np.sqrt((V - 1) / V) * N / row[C.row][None, :]  # (L, nnz) μ/P(x)·√((V−1)/V)
    nll = _neg_log_floor(q[None, :] - slack)  # (L, nnz)
    tot = np.stack([np.bincount(C.col, weights=C.data * r, minlength=V) for r in np.where(np.isinf(nll), 0, nll)])
    bad = np.stack([np.bincount(C.col, weights=np.isinf(r).astype(float), minlength=V) > 0 for r in nll])
    with np.errstate(invalid="ignore", divide="ignore"):
        ceiling = np.where(col > 0, tot / col, np.nan)  # (L, V)
    ceiling[bad] = np.inf
    if scalar:
        return LossCeiling(float(lw[0]), float(le[0]), float(mu[0]), ceiling[0])
    return LossCeiling(lw, le, mu, ceiling)
