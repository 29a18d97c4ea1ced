"""T6b in the factored bigram under L2: row-scaled decay of the embedding rows.

With penalty (λ_W/2)‖W‖² + Σ_x (λ_E c_x/2)‖e_x‖² (c_x > 0: a per-context decay scale) the substitution
e'_x = √c_x e_x gives the factored problem with equal decays on the logits z'_x = √c_x z_x, so (T7)

    min_Z Σ_x P(x) CE(q_x, z_x) + √(λ_W λ_E) ‖diag(√c) Z‖_*,

which ``imbalance.theory.nuclear.solve_nuclear_softmax`` solves with ``row_scale = √c``. Under L2 the
scale that equalises κ_x in the one-hot model is c_x ∝ P(x) (T6a): here it shrinks rare contexts' rows
less, and the nuclear norm still couples them. Statement: ``proofs/T6b_fair_optimizers.md``.

Under AdamW (``factored_fair_adamw_equilibrium``) every ``FairAdamW`` variant on the token rows of both
matrices is T10's per-coordinate stationarity with row options (``theory.adamw_shared.stationarity``):

* ``decay_scale`` c: λ → λ c_row on the unembedding rows W_v and the embedding rows e_x;
* ``lazy="decay"``: the decay of a row acts only in steps where its gradient row is non-zero. Embedding
  row x: context x in the batch, probability a_x = 1 − (1 − P(x))^B, so λ → λ c_x a_x. Unembedding row v:
  ∂/∂W_v = (r/B) Σ_i (p_v(x_i) − 1{y_i = v}) e_{x_i} with p_v > 0, non-zero in every step: a_v = 1;
* ``lazy="moments"`` (LazyAdam): decay, moments and step only in those steps; E[g | seen] = E[g]/a and
  E[g² | seen] = E[g²]/a exactly (g = 0 when unseen), so the expected drift is
  E[g]/(√(E[g²]/a) + ε) + λ c a θ (unembedding rows: plain AdamW);
* ``coupled``: Adam's second moment averaged over the rows of each matrix, per column (Coupled Adam).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_choice, as_count_matrix, as_positive, as_positive_int
from ..metrics import bucket_loss
from .adamw_shared import SharedAdamWEquilibrium, bigram_law, factored_bigram_adamw_equilibrium
from .fair_decay import LAZY, presence_probability
from .loss_split import bayes_loss_per_token
from .nuclear import as_rtol, solve_nuclear_softmax

__all__ = ["FactoredRowScaled", "factored_row_scaled_equilibrium", "fair_adamw_row_options",
           "factored_fair_adamw_equilibrium", "bucket_damage", "factored_fairness_verdict"]


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


def _scale_pair(decay_scale, V, C):
    """(c_W (V,), c_E (C,)) from None, one array for both (contexts = vocabulary) or a pair."""
    if decay_scale is None:
        return np.ones(V), np.ones(C)
    if isinstance(decay_scale, (tuple, list)) and len(decay_scale) == 2:
        cW, cE = (np.asarray(c, dtype=np.float64) for c in decay_scale)
    else:
        cW = cE = np.asarray(decay_scale, dtype=np.float64)
    if cW.shape != (V,) or cE.shape != (C,):
        raise ValueError(f"decay_scale must be one array of shape ({V},) (contexts = vocabulary) or a pair of "
                         f"shapes ({V},), ({C},), got shapes {cW.shape}, {cE.shape}")
    if not (np.isfinite(cW).all() and np.isfinite(cE).all()) or (cW < 0).any() or (cE < 0).any():
        raise ValueError("decay_scale must hold finite values >= 0")
    return cW, cE


def fair_adamw_row_options(counts, batch_size, *, decay_scale=None, lazy="none", coupled=False) -> dict:
    """The row options of :func:`imbalance.theory.adamw_shared.stationarity` that a ``FairAdamW`` variant
    (``decay_scale``, ``lazy``, ``coupled``, on the rows of W and of E) gives the factored bigram of
    ``counts`` with batches of ``batch_size`` pairs (module docstring)."""
    law = bigram_law(counts)
    C, V = law.shape
    B = as_positive_int(batch_size, "batch_size")
    lazy = as_choice(lazy, "lazy", set(LAZY))
    if not isinstance(coupled, (bool, np.bool_)):
        raise ValueError(f"coupled must be True or False, got coupled={coupled!r}")
    if coupled and lazy == "moments":
        raise ValueError("coupled=True is analysed with dense moments only, got lazy='moments'")
    cW, cE = _scale_pair(decay_scale, V, C)
    aW, aE = np.ones(V), presence_probability(law.P, B)               # (V,), (C,) P(gradient row ≠ 0)
    seen = (aW, aE) if lazy != "none" else (1.0, 1.0)
    return dict(row_decay=(cW * seen[0], cE * seen[1]), moment_presence=(aW, aE) if lazy == "moments" else None,
                shared_second_moment=bool(coupled))


def factored_fair_adamw_equilibrium(counts, lam, *, init, batch_size, decay_scale=None, lazy="none",
                                    coupled=False, **kwargs) -> SharedAdamWEquilibrium:
    """T6b in the factored bigram under AdamW: the equilibrium of ``FairAdamW`` with the variant's options
    on both token-row matrices, selected from ``init`` = (W0 (V, d), E0 (C, d)) by T10's mean-field flow.

    ``decay_scale``: the ``row_decay_scale`` of the rows, one array (contexts = vocabulary, as
    ``imbalance.optim.hooks.fair_adamw`` uses it) or a pair (W rows, E rows); ``lazy`` in
    {"none", "decay", "moments"}; ``coupled``; other keywords as
    :func:`imbalance.theory.adamw_shared.factored_bigram_adamw_equilibrium`, with ``patience`` 1000 and
    ``max_steps`` 3000 by default (on these systems the continuation's march can stall for hundreds of steps
    before it converges; with that function's defaults it may stop uncertified or fall back to the slow flow).
    """
    opts = fair_adamw_row_options(counts, batch_size, decay_scale=decay_scale, lazy=lazy, coupled=coupled)
    kwargs.setdefault("patience", 1000)
    kwargs.setdefault("max_steps", 3000)
    return factored_bigram_adamw_equilibrium(counts, lam, init=init, batch_size=batch_size, **opts, **kwargs)


def bucket_damage(loss_per_token, counts):
    """(bucket ids, damage (..., n_b)): per log3 frequency bucket of the targets, the loss of
    ``loss_per_token`` (..., V) minus that of the Bayes predictor q (``bayes_loss_per_token``): what the
    model loses against the law it could at best learn."""
    C = as_count_matrix(counts, "counts")
    pi = np.asarray(C.sum(axis=0)).ravel() / C.sum()
    ids, lb = bucket_loss(loss_per_token, pi)
    return ids, lb - bucket_loss(bayes_loss_per_token(C), pi)[1]


def factored_fairness_verdict(damage, plain_damage, *, tol=0.05) -> str:
    """T6b's verdicts (``fair_decay.VERDICTS``) in the factored model, from per-bucket damage (n_b,)
    (``bucket_damage``; bucket 0 the most frequent) of a variant and of plain AdamW at the same λ:

    with t = damage of the rarest bucket / damage of the most frequent and t₀ the same for plain AdamW,
    "fair" if every bucket's damage is within ``tol`` of the most frequent's; "over-corrects" if
    t < 1 − ``tol`` (rare tokens lose less than frequent ones); "unchanged" if t = t₀ (to 1e-9); "worse" if
    t > t₀; "partial" otherwise (between AdamW and fair). The one-hot verdict compares margins, which
    grow as the loss falls, hence the reversed inequalities.
    """
    d, d0 = (np.asarray(x, dtype=np.float64) for x in (damage, plain_damage))
    if d.ndim != 1 or d.shape != d0.shape or d.size < 2 or not (np.isfinite(d).all() and np.isfinite(d0).all()):
        raise ValueError(f"damage and plain_damage must be finite 1-D arrays of the same length >= 2, got shapes "
                         f"{d.shape}, {d0.shape}")
    if d[0] <= 0 or d0[0] <= 0:
        raise ValueError(f"the most frequent bucket must have positive damage, got {d[0]!r}, {d0[0]!r}")
    t, t0 = d[-1] / d[0], d0[-1] / d0[0]
    if np.all(np.abs(d / d[0] - 1) <= tol):
        return "fair"
    if t < 1 - tol:
        return "over-corrects"
    if abs(t - t0) <= 1e-9 * t0:
        return "unchanged"
    return "worse" if t > t0 else "partial"
