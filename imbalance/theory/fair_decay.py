"""T6b: AdamW equilibria of the deterministic bigram under fair-decay variants.

Generalises T3 (``margin_law``) to a per-row decay scale c_x, decay applied only when the row is
in the batch (``lazy="decay"``), moments that also update only then (``lazy="moments"``, as
LazyAdam) and a second moment shared across rows (``coupled``, Coupled Adam, Stollenwerk &
Stollenwerk 2025, arXiv 2502.08441). Statement and proof: ``proofs/T6b_fair_optimizers.md``.

Rows are contexts x (context k → token k, P(k) = π_k), one-hot inputs of norm r, batches of B
i.i.d. samples; a_x = 1 − (1 − π_x)^B is the probability that row x is in a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.special

from .._validate import (
    as_choice,
    as_distribution,
    as_frequencies,
    as_lams,
    as_nonnegative,
    as_positive,
    as_positive_int,
)
from ..formulas import adamw_rho
from ._roots import increasing_root

__all__ = [
    "LAZY",
    "VERDICTS",
    "FairBigramEquilibrium",
    "FairMarginLaw",
    "fair_bigram_equilibrium",
    "fair_margin_law",
    "fairness_index",
    "fairness_verdict",
    "loss_margins_from_logits",
    "presence_probability",
    "row_decay_scale",
]

LAZY = ("none", "decay", "moments")


def presence_probability(pi, batch_size) -> np.ndarray:
    """a = 1 − (1 − π)^B: probability that a row of frequency π appears in a batch of B samples."""
    P = np.asarray(pi, dtype=np.float64)
    B = as_positive_int(batch_size, "batch_size")
    return -np.expm1(B * np.log1p(-np.minimum(P, 1.0)))


def fairness_index(pi, batch_size, *, lazy="none", coupled=False) -> np.ndarray:
    """ε → 0 margin per row, in units of 2r/λ, without a decay scale: ρ √α / δ.

    δ = a (decay only when present) or 1; α = a (moments only when present) or 1. A decay scale
    c_x ∝ this index makes the variant fair (every row the same margin). Not defined for
    ``coupled`` (its margins are coupled across rows; use ``fair_margin_law``).
    """
    lazy = as_choice(lazy, "lazy", set(LAZY))
    if coupled:
        raise ValueError("fairness_index has no closed form for coupled=True, got coupled=True")
    P = as_frequencies(pi, "pi")
    rho = adamw_rho(P, batch_size)
    a = presence_probability(P, batch_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        if lazy == "decay":
            return np.where(a > 0, rho / a, 0.0)
        if lazy == "moments":
            return np.where(a > 0, rho / np.sqrt(a), 0.0)
    return rho


def row_decay_scale(counts, *, batch_size=None, optimizer="adamw", lazy="none", normalize="max") -> np.ndarray:
    """Per-row weight-decay multiplier that equalises the equilibrium margins (T6, T6b).

    ``counts``: how often each row's token occurs (any non-negative weights). AdamW: c_x ∝ ρ(B π_x)
    (T3), or ∝ ρ/a with ``lazy="decay"``, ρ/√a with ``lazy="moments"`` (T6b); L2/SGD: c_x ∝ π_x (T2).
    ``batch_size`` is B, the number of tokens per batch. Normalised to max 1 (frequent rows keep λ) or
    mean 1 over rows with positive count (``normalize="mean"``). Rows never seen get 0 (no decay).
    """
    P = as_frequencies(counts, "counts")
    optimizer = as_choice(optimizer, "optimizer", {"adamw", "sgd"})
    normalize = as_choice(normalize, "normalize", {"max", "mean"})
    if optimizer == "sgd":
        w = P.copy()
    else:
        if batch_size is None:
            raise ValueError("batch_size is required for optimizer='adamw' (tokens per batch), got batch_size=None")
        w = fairness_index(P, batch_size, lazy=lazy)
    return w / (w.max() if normalize == "max" else w[P > 0].mean())


@dataclass(frozen=True)
class FairMarginLaw:
    """Per-row equilibrium of the deterministic bigram under a fair-decay variant (λ leading axis).

    ``margins``: the loss-equivalent margin m_x, ℓ_x = log(1 + (K−1)e^{−m_x}) (the margin itself when
    the off-target logits of a row are equal, i.e. unless ``coupled``); ``limit_margins``: the ε → 0
    closed form 2 r ρ_x √α_x / (λ c_x δ_x) (NaN for ``coupled``); ``presence`` a_x.
    """

    lam: np.ndarray | float
    lazy: str
    coupled: bool
    margins: np.ndarray
    limit_margins: np.ndarray
    loss_per_token: np.ndarray
    rho: np.ndarray
    presence: np.ndarray
    aggregate_loss: np.ndarray | float
    token_balanced_loss: np.ndarray | float


def _loss(m, K):
    return np.log1p((K - 1) * np.exp(-m))


def _symmetric_margins(P, Lam, S, r, eps, K):
    """Root of m = (rπ/Λ)[A/(S A + ε') + C/(S C + ε')], A = 1 − p(target), C = A/(K−1), ε' = ε/r.

    T3's equation (``margin_law``) with λ → Λ_x (effective decay per step) and s → S_x (effective
    gradient scale); all arrays (L, K) flattened to the rows with π > 0.
    """
    cst = r * P / Lam
    hi = 2 * cst / S
    if eps == 0:
        return hi
    epsr = eps / r

    def g(x, idx):
        e = (K - 1) * np.exp(-x)
        A = e / (1 + e)
        C = A / (K - 1)
        Si, ci = S[idx], cst[idx]
        rhs = ci * (A / (Si * A + epsr) + C / (Si * C + epsr))
        dA = -A * (1 - A)
        drhs = ci * (epsr / (Si * A + epsr) ** 2 * dA + epsr / (Si * C + epsr) ** 2 * dA / (K - 1))
        return x - rhs, 1.0 - drhs, np.abs(x) + np.abs(rhs)

    return increasing_root(g, np.zeros_like(hi), hi * (1 + 1e-12), hi)


def fair_margin_law(pi, lam, *, batch_size, r=1.0, eps=1e-8, decay_scale=None, lazy="none",
                    coupled=False) -> FairMarginLaw:
    """Equilibrium margins of the deterministic bigram under a FairAdamW variant (T6b).

    Mean-field stationarity per coordinate (moments at their means, long β₂ window):
    dense moments  λ c_x δ_x w = −E[g]/(√E[g²] + ε);
    lazy moments   λ c_x w = −E[g | row present]/(√E[g² | row present] + ε), per present step;
    shared moments λ c_x δ_x w = −E[g]/(√v̄_j + ε), v̄_j = mean over rows x of E[g_xj²];
    δ_x = a_x for ``lazy`` in {"decay", "moments"}, else 1. ε → 0 and no coupling:
    m_x = 2 r ρ_x √α_x / (λ c_x δ_x), α_x = a_x for lazy moments, else 1.
    """
    P = as_distribution(pi, "pi")
    lams, scalar = as_lams(lam)
    B = as_positive_int(batch_size, "batch_size")
    r = as_positive(r, "r")
    eps = as_nonnegative(eps, "eps")
    lazy = as_choice(lazy, "lazy", set(LAZY))
    coupled = bool(coupled)
    if coupled and lazy == "moments":
        raise ValueError("coupled=True is analysed with dense moments only, got lazy='moments'")
    if coupled and (P == 0).any():
        raise ValueError(f"coupled=True needs every row seen (pi > 0), got pi[{int(np.argmin(P))}]=0")
    K = P.size
    c = np.ones(K) if decay_scale is None else np.asarray(decay_scale, dtype=np.float64)
    if c.shape != (K,) or not np.isfinite(c).all() or (c[P > 0] <= 0).any() or (c < 0).any():
        raise ValueError(f"decay_scale must be a finite array of shape ({K},), > 0 on rows with pi > 0, "
                         f"got decay_scale={c!r}")
    rho = adamw_rho(P, B)
    a = presence_probability(P, B)
    delta = a if lazy != "none" else np.ones(K)
    alpha = a if lazy == "moments" else np.ones(K)
    seen = P > 0
    Lam = lams[:, None] * (c * delta)[None, :]                     # (L, K) decay per step
    with np.errstate(divide="ignore", invalid="ignore"):
        limit = np.where(seen, 2 * r * rho * np.sqrt(alpha) / Lam, 0.0)  # (L, K)
    m = np.zeros((lams.size, K))
    if coupled:
        limit = np.full_like(limit, np.nan)
        for i in range(lams.size):
            m[i] = _coupled_margins(P, Lam[i], B, r, eps)
    else:
        s = np.sqrt(P * (1 + (B - 1) * P) / B)
        S = np.broadcast_to(np.where(seen, s / np.sqrt(np.where(seen, alpha, 1.0)), 1.0), m.shape)
        Pb = np.broadcast_to(P, m.shape)
        m[:, seen] = _symmetric_margins(Pb[:, seen].ravel(), Lam[:, seen].ravel(), S[:, seen].ravel(), r, eps,
                                        K).reshape(lams.size, -1)
    loss = _loss(m, K)
    fields = dict(margins=m, limit_margins=limit, loss_per_token=loss, aggregate_loss=loss @ P,
                  token_balanced_loss=loss.mean(1))
    if scalar:
        fields = {k: (float(v[0]) if v.ndim == 1 else v[0]) for k, v in fields.items()}
    return FairMarginLaw(lam=float(lams[0]) if scalar else lams, lazy=lazy, coupled=coupled, rho=rho,
                         presence=a, **fields)


def _rows_given_kappa(kappa):
    """Per row x: logits z with z_xj = κ_xj (δ_xj − p_xj), p_x = softmax(z_x) (the T2 stationarity with
    per-coordinate κ). Off-target z = −ω(log κ − S), target z = κ − ω(log κ + κ − S), S = log Σ e^z,
    one increasing scalar equation in S per row on the bracket [0, κ_xx + log K]."""
    K = kappa.shape[0]
    eye = np.eye(K, dtype=bool)
    lk = np.log(kappa)
    kd = np.diag(kappa)

    def logits(S, idx):
        arg = lk[idx] - S[:, None] + np.where(eye[idx], kappa[idx], 0.0)
        om = scipy.special.wrightomega(arg)
        return np.where(eye[idx], kappa[idx], 0.0) - om, om

    def g(S, idx):
        z, om = logits(S, idx)
        lse = scipy.special.logsumexp(z, axis=1)
        p = np.exp(z - lse[:, None])
        return S - lse, 1.0 - (p * om / (1 + om)).sum(1), np.abs(S) + np.abs(lse)

    S = increasing_root(g, np.zeros(K), kd + np.log(K))
    z, _ = logits(S, np.arange(K))
    return z, S


def _coupled_margins(P, Lam, B, r, eps):
    """Shared second moment: solve log v̄ = log mean_x E[g_xj²](W(v̄)) for the K column moments v̄_j."""
    K = P.size
    s2 = P * (1 + (B - 1) * P) / B                                   # (K,) E[N²]/B² per row
    eye = np.eye(K)

    def solve_rows(logv):
        kappa = r * r * P[:, None] / (Lam[:, None] * (np.exp(0.5 * logv)[None, :] + eps))  # (K, K)
        z, S = _rows_given_kappa(kappa)
        d = np.exp(z - S[:, None]) * (1 - eye)                       # (K, K) |p − δ|, off the diagonal
        d[np.arange(K), np.arange(K)] = d.sum(1)                     # 1 − p_xx without cancellation
        vbar = (r * r * d ** 2 * s2[:, None]).mean(0)                # (K,)
        return z, S, vbar

    logv = np.log(np.full(K, r * r * (s2 * P).mean()))
    for _ in range(40):  # damped fixed point: a start for the root finder
        logv = 0.5 * logv + 0.5 * np.log(solve_rows(logv)[2])
    def residual(u):
        return np.log(solve_rows(u)[2]) - u

    for method in ("hybr", "lm"):
        sol = scipy.optimize.root(residual, logv, method=method, options={"xtol": 1e-12})
        if np.max(np.abs(residual(sol.x))) <= 1e-9:
            break
        logv = sol.x
    else:
        raise RuntimeError(f"shared-moment equilibrium did not converge: {sol.message}, "
                           f"residual {np.max(np.abs(residual(sol.x))):.2e}")
    z, _, _ = solve_rows(sol.x)
    return loss_margins_from_logits(z)


def loss_margins_from_logits(z) -> np.ndarray:
    """Loss-equivalent margin per row of square logits z (..., K, K): ℓ_x = −log softmax(z_x)_x =
    log(1 + (K−1)e^{−m_x}), so e^{−m_x} = mean_{j≠x} e^{z_xj − z_xx} (no cancellation for large margins)."""
    z = np.asarray(z, dtype=np.float64)
    K = z.shape[-1]
    gap = z - np.diagonal(z, axis1=-2, axis2=-1)[..., None]             # (..., K, K) z_xj − z_xx
    off = np.where(np.eye(K, dtype=bool), -np.inf, gap)
    top = off.max(-1)                                                  # (..., K)
    return -(top + np.log(np.exp(off - top[..., None]).sum(-1) / (K - 1)))


@dataclass(frozen=True)
class FairBigramEquilibrium:
    """Any bigram task under a non-coupled variant, one λ: ``probs`` p(·|x) (C, V), ``loss_per_token``
    ℓ_v (V,) (NaN for tokens never a target), ``aggregate_loss`` Σ_v π_v ℓ_v."""

    lam: float
    lazy: str
    probs: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: float


def fair_bigram_equilibrium(counts, lam, *, batch_size, r=1.0, eps=1e-8, decay_scale=None,
                            lazy="none") -> FairBigramEquilibrium:
    """T6b for a general bigram task (contexts decouple): row x is T3's AdamW equilibrium with its own
    decay and ε. Dense moments: λ_x = λ c_x δ_x, ε_x = ε. Lazy moments: conditioning on presence divides
    E[g] and E[g²] by a_x, so λ c_x a_x w = −E[g]/(√(E[g²]/a_x) + ε), i.e. λ_x = λ c_x √a_x, ε_x = ε √a_x.
    Each distinct (λ_x, ε_x) is one call of ``bigram_equilibrium``.
    """
    from .._validate import as_count_matrix
    from .bigram import bigram_equilibrium

    C = as_count_matrix(counts)
    lam = as_positive(lam, "lam")
    B = as_positive_int(batch_size, "batch_size")
    eps = as_nonnegative(eps, "eps")
    lazy = as_choice(lazy, "lazy", set(LAZY))
    n_ctx, V = C.shape
    J = C.toarray() / C.sum()                                            # (C, V)
    P = J.sum(1)
    c = np.ones(n_ctx) if decay_scale is None else np.asarray(decay_scale, dtype=np.float64)
    if c.shape != (n_ctx,) or not np.isfinite(c).all() or (c[P > 0] <= 0).any() or (c < 0).any():
        raise ValueError(f"decay_scale must be a finite array of shape ({n_ctx},), > 0 on rows with P > 0, "
                         f"got decay_scale={c!r}")
    a = presence_probability(P, B)
    lam_x = lam * c * {"none": np.ones(n_ctx), "decay": a, "moments": np.sqrt(a)}[lazy]
    eps_x = eps * (np.sqrt(a) if lazy == "moments" else np.ones(n_ctx))
    probs = np.full((n_ctx, V), 1.0 / V)
    seen = np.flatnonzero(P > 0)
    for e in np.unique(eps_x[seen]):
        rows = seen[eps_x[seen] == e]
        eq = bigram_equilibrium(C, lam_x[rows], r=r, optimizer="adamw", batch_size=B, eps=float(e))
        probs[rows] = eq.probs()[np.arange(rows.size), rows]              # row x of the solve at λ_x
    pi = J.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ce = -(J * np.where(J > 0, np.log(probs), 0.0)).sum(0)
        loss = np.where(pi > 0, ce / pi, np.nan)
    return FairBigramEquilibrium(lam=lam, lazy=lazy, probs=probs, loss_per_token=loss,
                                 aggregate_loss=float(ce.sum()))


VERDICTS = ("fair", "partial", "unchanged", "over-corrects", "worse")


def fairness_verdict(pi, lam, *, batch_size, r=1.0, eps=1e-8, tol=0.05, **variant) -> str:
    """Classify a variant before training from its equilibrium margins (``fair_margin_law``):

    with t = (margin of the rarest row)/(margin of the most frequent) and t₀ the same for plain AdamW:
    "fair" if every margin is within ``tol`` of the most frequent row's; "over-corrects" if t > 1 + tol;
    "unchanged" if t = t₀ (to 1e-9); "worse" if t < t₀ (rare rows lose more than under AdamW);
    "partial" otherwise (between AdamW and fair).
    """
    P = as_distribution(pi, "pi")
    kw = dict(batch_size=batch_size, r=r, eps=eps)
    m = fair_margin_law(P, lam, **kw, **variant).margins
    m0 = fair_margin_law(P, lam, **kw).margins
    head, tail = int(np.argmax(P)), int(np.argmin(np.where(P > 0, P, np.inf)))
    t, t0 = m[tail] / m[head], m0[tail] / m0[head]
    if np.all(np.abs(m[P > 0] / m[head] - 1) <= tol):
        return "fair"
    if t > 1 + tol:
        return "over-corrects"
    if abs(t - t0) <= 1e-9 * t0:
        return "unchanged"
    return "worse" if t < t0 else "partial"
