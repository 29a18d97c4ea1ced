"""Factored (embedding–unembedding) bigram LM with weight decay, solved exactly (T7).

    min_{W, E}  Σ_x P(x) CE(q(·|x), W e_x) + (λ_W/2)‖W‖² + (λ_E/2)‖E‖²

W (V × d) unembeddings, E (d × n) context embeddings, width d ≥ min(n, V). By the variational
identity min_{WE=Z} (a/2)‖W‖² + (b/2)‖E‖² = √(ab)‖Z‖_* this equals
min_Z Σ_x P(x) CE(q_x, z_x) + √(λ_Wλ_E)‖Z‖_*. Tied embeddings (one matrix E used as both
tables, W = Eᵀ, n = V, as in GPT-2) have *one* decay λ: the penalty is (λ/2)‖E‖² = (λ/2) tr Z,
so the problem is min_{Z ⪰ 0} Σ_x P(x) CE(q_x, z_x) + (λ/2) tr Z (proofs/T7_factored_bigram.md).
Pinto et al. 2024 (the paradox), here without any training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._validate import as_count_matrix, as_lams
from .nuclear import as_rtol, broadcast_lams, check_penalty_range, solve_path

__all__ = ["FactoredBigramEquilibrium", "factored_bigram_equilibrium", "factored_penalty_weight"]

RANK_RTOL = 1e-6  # singular values below RANK_RTOL·σ₁ are counted as zero in ``rank``


def _decays(lam_w, lam_e, lam, tied):
    """(λ_W path, λ_E path, is_scalar), refused where the penalty weight leaves the solver's
    range (:func:`imbalance.theory.nuclear.check_penalty_range`); tied: both are the one decay
    ``lam`` of the shared matrix."""
    lw, le, scalar = _parse_decays(lam_w, lam_e, lam, tied)
    names = ("lam", "lam") if tied or lam is not None else ("lam_w", "lam_e")
    check_penalty_range(lw, names[0], le, names[1], tied=tied)
    return lw, le, scalar


def _parse_decays(lam_w, lam_e, lam, tied):
    if tied:
        if lam_w is not None or lam_e is not None:
            raise ValueError(f"tied embeddings are one matrix with one decay: pass lam=..., not "
                             f"lam_w={lam_w!r}, lam_e={lam_e!r}")
        if lam is None:
            raise ValueError("tied embeddings need lam (the decay of the shared matrix), got lam=None")
        lams, scalar = as_lams(lam, "lam")
        return lams, lams.copy(), scalar
    if lam is not None:
        if lam_w is not None or lam_e is not None:
            raise ValueError(f"pass either lam or (lam_w, lam_e), got lam={lam!r}, lam_w={lam_w!r}, lam_e={lam_e!r}")
        lams, scalar = as_lams(lam, "lam")
        return lams, lams.copy(), scalar
    if lam_w is None or lam_e is None:
        raise ValueError(f"untied embeddings need lam_w and lam_e (or lam), got lam_w={lam_w!r}, lam_e={lam_e!r}")
    return broadcast_lams(lam_w, "lam_w", lam_e, "lam_e")


def factored_penalty_weight(lam_w=None, lam_e=None, *, tied: bool = False, lam=None) -> np.ndarray | float:
    """μ of the convex program: √(λ_Wλ_E) on ‖Z‖_* (untied) or λ/2 on tr Z (tied, one decay λ)."""
    lw, le, scalar = _decays(lam_w, lam_e, lam, bool(tied))
    mu = lw / 2 if tied else np.sqrt(lw * le)
    return float(mu[0]) if scalar else mu


@dataclass(frozen=True)
class FactoredBigramEquilibrium:
    """Equilibrium of the factored bigram LM; a 1-D λ path adds a leading axis.

    ``optimizer="l2"``: the global minimiser (T7). ``loss_per_token[v]``: mean CE over the
    occurrences of v as *target* (NaN if v never occurs as a target); ``aggregate_loss`` =
    Σ_v P(v) ℓ_v (the training loss); ``token_balanced_loss`` = mean of ℓ_v over the targets that
    occur. ``W`` (V × r) and ``E`` (r × n) are the balanced optimal factors (r = min(n, V),
    zero-padded), so the logits after context x are ``W @ E[:, x]``; ``unembedding_norms[v]`` =
    ‖W_v‖. ``singular_values`` of Z = WE (zero-padded), ``rank`` = #{σ_i > RANK_RTOL·σ₁}.
    ``gap`` bounds objective − optimum (Fenchel duality).

    ``optimizer="adamw"``: the AdamW equilibrium (T10) selected from the initialisation, with
    ``W`` (V × d) and ``E`` (d × n) the factors themselves; its certificate is ``residual`` =
    max_i |F_i| of the stationarity map and ``flow_time`` the mean-field time integrated;
    ``occurrences_per_window`` = B π_v/(1 − β₂). The L2 certificates (``objective``, ``gap``,
    ``rel_gap``, ``dual_ratio``) are NaN there, and ``residual``, ``flow_time`` NaN under L2.
    """

    lam_w: np.ndarray | float
    lam_e: np.ndarray | float
    tied: bool  # tied: lam_w = lam_e = the one decay λ of the shared matrix
    token_frequency: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: np.ndarray | float
    token_balanced_loss: np.ndarray | float
    W: np.ndarray
    E: np.ndarray
    singular_values: np.ndarray
    rank: np.ndarray | int
    unembedding_norms: np.ndarray
    embedding_norms: np.ndarray
    objective: np.ndarray | float
    gap: np.ndarray | float
    rel_gap: np.ndarray | float
    dual_ratio: np.ndarray | float
    optimizer: str = "l2"
    residual: np.ndarray | float = np.nan
    flow_time: np.ndarray | float = np.nan
    batch_size: int | None = None
    occurrences_per_window: np.ndarray | None = None


_FIELDS = ("loss_per_token", "aggregate_loss", "token_balanced_loss", "W", "E", "singular_values", "rank",
           "unembedding_norms", "embedding_norms", "objective", "gap", "rel_gap", "dual_ratio")


def factored_bigram_equilibrium(counts, lam_w=None, lam_e=None, *, tied: bool = False, lam=None,
                                rtol: float = 1e-9, optimizer: str = "l2", **adamw) -> FactoredBigramEquilibrium:
    """Equilibrium of the weight-decayed factored bigram LM: exact global minimiser (T7) or,
    with ``optimizer="adamw"``, the AdamW equilibrium (T10).

    ``counts``: (contexts × vocabulary) non-negative counts, dense or scipy.sparse (the
    empirical law P(x) q(v|x) = C_xv / ΣC). Decays (scalars or 1-D arrays):

    * untied: ``lam_w`` (unembedding W) and ``lam_e`` (embedding E), or ``lam`` alone for
      λ_W = λ_E = λ; penalty (λ_W/2)‖W‖² + (λ_E/2)‖E‖².
    * ``tied=True`` (square counts, W = Eᵀ): the one shared matrix has the one decay ``lam``,
      penalty (λ/2)‖E‖² = (λ/2) tr Z; passing ``lam_w``/``lam_e`` is an error (one matrix
      cannot be decayed twice). This is what ``imbalance.sim.models.FactoredBigram(tied=True)``
      trains with L2 decay λ.

    Solved to a relative duality gap ``rtol`` (in [1e-13, 1)) by
    :func:`imbalance.theory.nuclear.solve_nuclear_softmax`. The penalty weight μ = √(λ_Wλ_E)
    (λ/2 tied) must lie in :data:`imbalance.theory.nuclear.MU_RANGE` = [1e-5, 1e12]: on counts
    that the model can fit exactly (contexts with one successor) the objective vanishes as μ → 0
    and, below 1e-5, its relative duality gap cannot be certified in float64. λ_E/λ_W must lie in
    [1e-200, 1e200] (the balanced factors scale by its fourth root).

    ``optimizer="adamw"``: decoupled decays λ_W, λ_E (tied: the one decay ``lam``); keywords ``init`` =
    (W0 (V, d), E0 (n, d)) the training initialisation (required; tied: E0 (V, d) alone), ``batch_size``,
    ``eps``, ``betas`` and the
    solver options of :func:`imbalance.theory.adamw_shared.factored_bigram_adamw_equilibrium`;
    ``rtol`` does not apply.
    """
    if optimizer == "adamw":
        return _adamw(counts, lam_w, lam_e, lam, tied, adamw)
    if optimizer != "l2":
        raise ValueError(f"optimizer must be 'l2' or 'adamw', got optimizer={optimizer!r}")
    if adamw:
        raise ValueError(f"{sorted(adamw)} apply to optimizer='adamw' only, got optimizer={optimizer!r}")
    C = as_count_matrix(counts, "counts")
    rtol = as_rtol(rtol)
    _check_tied(tied, C.shape)
    lw, le, scalar = _decays(lam_w, lam_e, lam, bool(tied))
    N = C.sum()
    seen_ctx = np.flatnonzero(np.diff(C.indptr) > 0)
    if tied:
        M, mus = C / N, lw / 2  # (λ/2) tr Z
        sols = solve_path(M, mus, psd=True, rtol=rtol)
    else:
        M, mus = C[seen_ctx] / N, np.sqrt(lw * le)  # unseen contexts have e_x = 0 at the optimum
        sols = solve_path(M, mus, rtol=rtol)
    target_count = np.asarray(C.sum(axis=0)).ravel()
    rows = [_l2_fields(sol, a, e, sp.coo_matrix(M), N, target_count, C.shape, seen_ctx, tied)
            for sol, a, e in zip(sols, lw, le)]
    out = {k: (rows[0][i] if scalar else np.asarray([r[i] for r in rows])) for i, k in enumerate(_FIELDS)}
    return FactoredBigramEquilibrium(
        lam_w=float(lw[0]) if scalar else lw, lam_e=float(le[0]) if scalar else le, tied=bool(tied),
        token_frequency=target_count / N, **out)


def _check_tied(tied, shape):
    if not isinstance(tied, (bool, np.bool_)):
        raise ValueError(f"tied must be True or False, got tied={tied!r}")
    if tied and shape[0] != shape[1]:
        raise ValueError(f"tied embeddings need a square counts matrix (contexts = vocabulary), "
                         f"got counts.shape={shape}")


def _l2_fields(sol, a, e, Mc, N, target_count, shape, seen_ctx, tied):
    """The result fields (in ``_FIELDS`` order) of one nuclear-norm solution."""
    n, V = shape
    Z = sol.logits
    m = Z.max(axis=1)
    lse = m + np.log(np.exp(Z - m[:, None]).sum(axis=1))
    nll = lse[Mc.row] - Z[Mc.row, Mc.col]  # −log p(v|x) on the observed pairs
    tot = np.bincount(Mc.col, weights=Mc.data * N * nll, minlength=V)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = np.where(target_count > 0, tot / target_count, np.nan)
    r_max, r = min(n, V), sol.left.shape[1]
    W, E = np.zeros((V, r_max)), np.zeros((r_max, n))
    if tied:
        W[:, :r] = sol.left
        E[:r, :] = sol.left.T
    else:
        c = (e / a) ** 0.25
        W[:, :r] = c * sol.right
        E[:r, seen_ctx] = sol.left.T / c
    sv = np.zeros(r_max)
    sv[:r] = sol.singular_values
    rank = int(np.sum(sv > RANK_RTOL * sv[0])) if r else 0
    return (loss, float(tot.sum() / N), float(np.nanmean(loss)), W, E, sv, rank, np.linalg.norm(W, axis=1),
            np.linalg.norm(E, axis=0), sol.objective, sol.gap, sol.rel_gap, sol.dual_ratio)


def _adamw(counts, lam_w, lam_e, lam, tied, adamw):
    """``optimizer="adamw"``: :func:`~imbalance.theory.adamw_shared.factored_bigram_adamw_equilibrium`
    in the L2 result type (L2 certificates NaN)."""
    from .adamw_shared import factored_bigram_adamw_equilibrium

    _check_tied(tied, as_count_matrix(counts, "counts").shape)
    lw, le, scalar = _parse_decays(lam_w, lam_e, lam, bool(tied))
    eq = factored_bigram_adamw_equilibrium(counts, lw[0] if scalar else lw,
                                           lam_e=None if tied else (le[0] if scalar else le), tied=bool(tied), **adamw)
    nan = np.nan if scalar else np.full(lw.shape, np.nan)
    return FactoredBigramEquilibrium(
        lam_w=eq.lam, lam_e=eq.lam_e, tied=bool(tied), token_frequency=eq.token_frequency,
        loss_per_token=eq.loss_per_token, aggregate_loss=eq.aggregate_loss,
        token_balanced_loss=eq.token_balanced_loss, W=eq.W, E=eq.E, singular_values=eq.singular_values,
        rank=eq.rank, unembedding_norms=eq.unembedding_norms, embedding_norms=eq.embedding_norms,
        objective=nan, gap=nan, rel_gap=nan, dual_ratio=nan, optimizer="adamw", residual=eq.residual,
        flow_time=eq.flow_time, batch_size=eq.batch_size, occurrences_per_window=eq.occurrences_per_window)
