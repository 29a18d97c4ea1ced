"""Factored (embedding–unembedding) bigram LM with weight decay, solved exactly (T7).

    min_{W, E}  Σ_x P(x) CE(q(·|x), W e_x) + (λ_W/2)‖W‖² + (λ_E/2)‖E‖²

W (V × d) unembeddings, E (d × n) context embeddings, width d ≥ min(n, V). By the variational
identity min_{WE=Z} (a/2)‖W‖² + (b/2)‖E‖² = √(ab)‖Z‖_* this equals
min_Z Σ_x P(x) CE(q_x, z_x) + √(λ_Wλ_E)‖Z‖_*; with tied embeddings (W = Eᵀ, n = V) it is
min_{Z ⪰ 0} Σ_x P(x) CE(q_x, z_x) + ((λ_W + λ_E)/2) tr Z (proofs/T7_factored_bigram.md).
DESIGN.md T7; Pinto et al. 2024 (the paradox), here without any training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._validate import as_count_matrix
from .nuclear import broadcast_lams, solve_path

__all__ = ["FactoredBigramEquilibrium", "factored_bigram_equilibrium"]

RANK_RTOL = 1e-6  # singular values below RANK_RTOL·σ₁ are counted as zero in ``rank``


@dataclass(frozen=True)
class FactoredBigramEquilibrium:
    """Global minimiser of the factored bigram LM (T7); a 1-D λ path adds a leading axis.

    ``loss_per_token[v]``: mean CE over the occurrences of v as *target* (NaN if v never
    occurs as a target); ``aggregate_loss`` = Σ_v P(v) ℓ_v (the training loss);
    ``token_balanced_loss`` = mean of ℓ_v over the targets that occur. ``W`` (V × r) and
    ``E`` (r × n) are the balanced optimal factors (r = min(n, V), zero-padded), so the
    logits after context x are ``W @ E[:, x]``; ``unembedding_norms[v]`` = ‖W_v‖.
    ``singular_values`` of Z = WE (zero-padded), ``rank`` = #{σ_i > RANK_RTOL·σ₁}.
    ``gap`` bounds objective − optimum (Fenchel duality).
    """

    lam_w: np.ndarray | float
    lam_e: np.ndarray | float
    tied: bool
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


def factored_bigram_equilibrium(counts, lam_w, lam_e, *, tied: bool = False,
                                rtol: float = 1e-9) -> FactoredBigramEquilibrium:
    """Exact global minimiser of the weight-decayed factored bigram LM (T7).

    ``counts``: (contexts × vocabulary) non-negative counts, dense or scipy.sparse (the
    empirical law P(x) q(v|x) = C_xv / ΣC). ``tied=True`` needs a square matrix (contexts
    are the vocabulary) and uses W = Eᵀ. ``lam_w``, ``lam_e``: scalars or 1-D arrays.
    Solved to a relative duality gap ``rtol`` by :func:`imbalance.theory.nuclear.solve_nuclear_softmax`.
    """
    C = as_count_matrix(counts, "counts")
    if not isinstance(tied, (bool, np.bool_)):
        raise ValueError(f"tied must be True or False, got tied={tied!r}")
    n, V = C.shape
    if tied and n != V:
        raise ValueError(f"tied embeddings need a square counts matrix (contexts = vocabulary), "
                         f"got counts.shape={C.shape}")
    lw, le, scalar = broadcast_lams(lam_w, "lam_w", lam_e, "lam_e")
    N = C.sum()
    target_count = np.asarray(C.sum(axis=0)).ravel()
    seen_ctx = np.flatnonzero(np.diff(C.indptr) > 0)
    if tied:
        M, mus = C / N, (lw + le) / 2
        sols = solve_path(M, mus, psd=True, rtol=rtol)
    else:
        M, mus = C[seen_ctx] / N, np.sqrt(lw * le)  # unseen contexts have e_x = 0 at the optimum
        sols = solve_path(M, mus, rtol=rtol)
    Mc = sp.coo_matrix(M)
    r_max = min(n, V)
    fields: dict[str, list] = {k: [] for k in (
        "loss_per_token", "aggregate_loss", "token_balanced_loss", "W", "E", "singular_values", "rank",
        "unembedding_norms", "embedding_norms", "objective", "gap", "rel_gap", "dual_ratio")}
    for sol, a, e in zip(sols, lw, le):
        Z = sol.logits
        m = Z.max(axis=1)
        lse = m + np.log(np.exp(Z - m[:, None]).sum(axis=1))
        nll = lse[Mc.row] - Z[Mc.row, Mc.col]  # −log p(v|x) on the observed pairs
        tot = np.bincount(Mc.col, weights=Mc.data * N * nll, minlength=V)
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = np.where(target_count > 0, tot / target_count, np.nan)
        r = sol.left.shape[1]
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
        fields["loss_per_token"].append(loss)
        fields["aggregate_loss"].append(float(tot.sum() / N))
        fields["token_balanced_loss"].append(float(np.nanmean(loss)))
        fields["W"].append(W)
        fields["E"].append(E)
        fields["singular_values"].append(sv)
        fields["rank"].append(int(np.sum(sv > RANK_RTOL * sv[0])) if r else 0)
        fields["unembedding_norms"].append(np.linalg.norm(W, axis=1))
        fields["embedding_norms"].append(np.linalg.norm(E, axis=0))
        fields["objective"].append(sol.objective)
        fields["gap"].append(sol.gap)
        fields["rel_gap"].append(sol.rel_gap)
        fields["dual_ratio"].append(sol.dual_ratio)
    out = {k: (v[0] if scalar else np.asarray(v)) for k, v in fields.items()}
    return FactoredBigramEquilibrium(
        lam_w=float(lw[0]) if scalar else lw, lam_e=float(le[0]) if scalar else le, tied=bool(tied),
        token_frequency=target_count / N, **out)
