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

The column (target-token) version of the same condition, ‖(P(x)(p(v|x) − q(v|x)))_x‖ ≤ μ, is
:func:`factored_column_bound`: a bound on the deficit of v's predicted marginal mass and a loss
ceiling never above the row one.

A ceiling is +∞ where the floor is ≤ 0 (the bound says nothing there): rare tokens get no
ceiling, which is the rigorous half of "rare tokens lose".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._validate import as_count_matrix, as_distribution
from .nuclear import broadcast_lams

__all__ = ["LossCeiling", "ColumnBound", "ufm_loss_ceiling", "factored_loss_ceiling", "factored_column_bound"]


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


@dataclass(frozen=True)
class ColumnBound:
    """Column (target-token) bounds of T9 for the untied factored LM; a 1-D λ path adds a leading
    axis. ``mass_deficit[..., v]`` ≥ π_v − Σ_x P(x) p(v|x) (true minus predicted marginal of v);
    ``ceiling[..., v]`` ≥ the optimal mean loss of target v (+∞: no bound, NaN: v never a target)."""

    lam_w: np.ndarray | float
    lam_e: np.ndarray | float
    mu: np.ndarray | float
    mass_deficit: np.ndarray
    ceiling: np.ndarray


def factored_column_bound(counts, lam_w, lam_e) -> ColumnBound:
    """T9 column bounds at the untied factored-LM optimum, from Σ_x P(x)² δ_x² ≤ μ² with
    δ_x = (q(v|x) − p(v|x))₊ and the row bound δ_x ≤ d_x = (μ/P(x))√((V − 1)/V):

    * mass deficit π_v − Σ_x P(x)p(v|x) ≤ Σ_x P(x)δ_x ≤ μ√m_v, m_v = #contexts that precede v;
    * loss: with w_x = C_xv/Σ_x C_xv and c_x = −log(1 − d_x/q(v|x)) (chord of the convex
      −log(1 − δ/q) on [0, d_x]), ℓ_v ≤ H_v + min(Σ_x w_x c_x, μ‖(w_x c_x/(d_x P(x)))_x‖),
      H_v = Σ_x w_x(−log q(v|x)); +∞ if some d_x ≥ q(v|x).
    """
    C = sp.coo_matrix(as_count_matrix(counts, "counts"))
    lw, le, scalar = broadcast_lams(lam_w, "lam_w", lam_e, "lam_e")
    n, V = C.shape
    N = C.sum()
    row = np.bincount(C.row, weights=C.data, minlength=n)  # N·P(x)
    col = np.bincount(C.col, weights=C.data, minlength=V)  # occurrences of v as a target
    q, Px, w = C.data / row[C.row], row[C.row] / N, C.data / col[C.col]  # (nnz,) each
    mu = np.sqrt(lw * le)  # (L,)
    d = mu[:, None] * np.sqrt((V - 1) / V) / Px[None, :]  # (L, nnz) row bound on δ_x
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(d < q, -np.log1p(-np.minimum(d / q, 1.0)), np.inf)  # (L, nnz)
    ok = np.isfinite(c)
    wc = np.where(ok, w * c, 0.0)  # (L, nnz)

    def per_token(x):  # (L, nnz) → (L, V) sums over the contexts of each target
        return np.stack([np.bincount(C.col, weights=r, minlength=V) for r in x])

    chord = np.sqrt(per_token((wc / (d * Px)) ** 2)) * mu[:, None]  # (L, V) Cauchy–Schwarz
    H = np.bincount(C.col, weights=w * -np.log(q), minlength=V)  # (V,)
    bad = per_token((~ok).astype(float)) > 0  # (L, V)
    with np.errstate(invalid="ignore"):
        ceiling = np.where(col > 0, H + np.minimum(per_token(wc), chord), np.nan)  # (L, V)
    ceiling[bad] = np.inf
    m = np.bincount(C.col, minlength=V)  # contexts preceding each v (coo entries are distinct cells)
    mass = np.where(col > 0, mu[:, None] * np.sqrt(m), np.nan)  # (L, V)
    if scalar:
        return ColumnBound(float(lw[0]), float(le[0]), float(mu[0]), mass[0], ceiling[0])
    return ColumnBound(lw, le, mu, mass, ceiling)
