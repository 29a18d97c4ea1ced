"""T6b in the factored bigram under L2: row-scaled decay of the embedding rows.

With penalty (λ_W/2)‖W‖² + Σ_x (λ_E c_x/2)‖e_x‖² (c_x > 0: a per-context decay scale) the substitution
e'_x = √c_x e_x gives the factored problem with equal decays on the logits z'_x = √c_x z_x, so (T7)

    min_Z Σ_x P(x) CE(q_x, z_x) + √(λ_W λ_E) ‖diag(√c) Z‖_*,

which ``imbalance.theory.nuclear.solve_nuclear_softmax`` solves with ``row_scale = √c``. Under L2 the
scale that equalises κ_x in the one-hot model is c_x ∝ P(x) (T6a): here it shrinks rare contexts' rows
less, and the nuclear norm still couples them. Statement: ``proofs/T6b_fair_optimizers.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_count_matrix, as_positive
from .nuclear import as_rtol, solve_nuclear_softmax

__all__ = ["FactoredRowScaled", "factored_row_scaled_equilibrium"]


@dataclass(frozen=True)
class FactoredRowScaled:
    """Optimum of the row-scaled factored bigram: logits Z (n, V), per-target-token loss (V,) (NaN for
    tokens never observed), aggregate loss, objective value and the solver's relative duality gap."""

    logits: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: float
    objective: float
    rel_gap: float


def factored_row_scaled_equilibrium(counts, lam_w, lam_e, decay_scale, *, rtol=1e-9) -> FactoredRowScaled:
    """Global minimiser of Σ_x P(x) CE(q_x, W e_x) + (λ_W/2)‖W‖² + Σ_x (λ_E c_x/2)‖e_x‖² (untied, L2).

    ``counts`` (contexts × vocabulary, every context observed), ``decay_scale`` c (n,) > 0, e.g.
    P(x)/max P (T6a) or ones (plain T7)."""
    C = as_count_matrix(counts, "counts")
    n, V = C.shape
    c = np.asarray(decay_scale, dtype=np.float64)
    if c.shape != (n,) or not np.isfinite(c).all() or (c <= 0).any():
        raise ValueError(f"decay_scale must be {n} finite values > 0 (one per context), got shape {c.shape}")
    if (np.diff(C.indptr) == 0).any():
        raise ValueError("counts has a context with no observation; drop it (its embedding row is 0 at the optimum)")
    mu = float(np.sqrt(as_positive(lam_w, "lam_w") * as_positive(lam_e, "lam_e")))
    N = C.sum()
    sol = solve_nuclear_softmax(C / N, mu, row_scale=np.sqrt(c), rtol=as_rtol(rtol))
    Z = sol.logits                                                         # (n, V)
    m = Z.max(axis=1)
    lse = m + np.log(np.exp(Z - m[:, None]).sum(axis=1))                   # (n,)
    Cc = C.tocoo()
    nll = lse[Cc.row] - Z[Cc.row, Cc.col]
    tot = np.bincount(Cc.col, weights=Cc.data * nll, minlength=V)
    cnt = np.bincount(Cc.col, weights=Cc.data, minlength=V)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = np.where(cnt > 0, tot / cnt, np.nan)
    return FactoredRowScaled(Z, loss, float(tot.sum() / N), float(sol.objective), float(sol.rel_gap))
