"""T2 and T3: the bigram model (one-hot contexts, decayed output matrix, no bias).

Context x, with probability P(x), enters as a one-hot vector of norm r; its logits are
z_x = r w_x. Under L2 (what SGD/GD with coupled weight decay converges to) each
context is an independent unigram problem with κ_x = P(x) r²/λ (T2):
p(·|x) = softmax(κ_x (q(·|x) − p(·|x))). Under AdamW with decoupled decay, minibatches
of B i.i.d. pairs and a long β2 window, each weight settles where
E[g]/(√E[g²] + ε) = −λ w (T3). Both are solved exactly, in O(nnz) time and memory:
tokens absent from a context (q = 0) obey the same scalar equation and share one
probability, so they are one item with a multiplicity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._validate import (
    as_choice,
    as_count_matrix,
    as_frequencies,
    as_lams,
    as_nonnegative,
    as_positive,
    as_positive_int,
    drop_lam_axis,
)
from ..formulas import kappa, logit_adjustment
from . import fixed_point
from .fixed_point import AdamWResponse, L2Response, Layout, ratio_defect

__all__ = ["BigramEquilibrium", "bigram_equilibrium", "AdjustedLoss"]


@dataclass(frozen=True)
class AdjustedLoss:
    """Losses of the post-hoc logit-adjusted predictor p_τ(v|x) ∝ p(v|x) π_v^(−τ) (T6c);
    λ leading as in the equilibrium it came from."""

    tau: float
    pi: np.ndarray                 # (V,) the token prior π used in the adjustment
    loss_per_token: np.ndarray     # (..., V)
    aggregate_loss: np.ndarray | float
    token_balanced_loss: np.ndarray | float


@dataclass(frozen=True)
class BigramEquilibrium:
    """Equilibrium of the bigram model for one or several weight decays.

    Array fields have λ as leading axis when ``lam`` was an array. Probabilities and
    logits are stored sparsely: ``probs_nz``/``logits_nz`` follow ``counts.data``
    (CSR order), ``probs_absent``/``logits_absent`` hold the shared value of the tokens
    a context never saw (contexts never seen predict uniformly: w = 0). Use
    :meth:`probs` and :meth:`logits` for dense rows. ``objective`` is the L2 objective
    Σ_x P(x) CE(q(·|x), p(·|x)) + (λ/2)‖W‖² evaluated here: the minimum value under
    ``optimizer="sgd"``; under ``"adamw"`` the same function at the AdamW equilibrium, which
    does not minimise it (compare the two to see what decoupled decay costs in L2 terms).
    """

    lam: np.ndarray | float
    optimizer: str
    r: float
    batch_size: int | None
    eps: float
    counts: sp.csr_matrix
    context_prob: np.ndarray       # P(x), (n_ctx,)
    probs_nz: np.ndarray           # (..., nnz)
    probs_absent: np.ndarray       # (..., n_ctx)
    logits_nz: np.ndarray          # (..., nnz)
    logits_absent: np.ndarray      # (..., n_ctx)
    loss_per_token: np.ndarray     # (..., V): mean CE over occurrences of v as target, NaN if none
    context_loss: np.ndarray       # (..., n_ctx): CE(q(·|x), p(·|x)), NaN for unseen contexts
    aggregate_loss: np.ndarray | float
    token_balanced_loss: np.ndarray | float
    objective: np.ndarray | float  # Σ_x P(x) CE + (λ/2)‖W‖² at this point (its minimum under sgd)

    def _dense(self, nz, absent, contexts):
        scalar = np.ndim(self.lam) == 0
        nz, absent = np.atleast_2d(nz), np.atleast_2d(absent)
        n_ctx, V = self.counts.shape
        rows = np.arange(n_ctx) if contexts is None else np.atleast_1d(np.asarray(contexts))
        if rows.size == 0:
            rows = rows.astype(np.int64)
        if rows.ndim != 1 or rows.dtype.kind not in "iu" or rows.size and (rows.min() < -n_ctx or rows.max() >= n_ctx):
            raise ValueError(f"contexts must be a 1-D array of integer indices in [-{n_ctx}, {n_ctx}), "
                             f"got contexts={contexts!r:.80}")
        rows = rows % n_ctx
        out = np.repeat(absent[:, rows, None], V, axis=2)  # (L, n_rows, V)
        indptr, indices = self.counts.indptr, self.counts.indices
        for i, x in enumerate(rows):
            a, b = indptr[x], indptr[x + 1]
            out[:, i, indices[a:b]] = nz[:, a:b]
        return out[0] if scalar else out

    def probs(self, contexts=None) -> np.ndarray:
        """Dense predicted distributions p(·|x), shape (..., n_rows, V)."""
        return self._dense(self.probs_nz, self.probs_absent, contexts)

    def logits(self, contexts=None) -> np.ndarray:
        """Dense logits z_x = r w_x, shape (..., n_rows, V)."""
        return self._dense(self.logits_nz, self.logits_absent, contexts)

    def predicted_marginal(self) -> np.ndarray:
        """p̄_v = Σ_x P(x) p(v|x), the model's average next-token distribution, (..., V), O(nnz).
        Compare with the target marginal (``imbalance.metrics.marginal_calibration_error``)."""
        C = self.counts
        n_ctx, V = C.shape
        P = self.context_prob
        row_of_nz = np.repeat(np.arange(n_ctx), np.diff(C.indptr))
        p_nz, p_abs = np.atleast_2d(self.probs_nz), np.atleast_2d(self.probs_absent)
        out = np.empty((p_nz.shape[0], V))
        for i in range(p_nz.shape[0]):
            base = P @ p_abs[i]  # every token at its context's absent probability
            extra = P[row_of_nz] * (p_nz[i] - p_abs[i, row_of_nz])
            out[i] = base + np.bincount(C.indices, weights=extra, minlength=V)
        return out[0] if np.ndim(self.lam) == 0 else out

    def logit_adjusted(self, tau, pi=None) -> AdjustedLoss:
        """Exact losses after post-hoc logit adjustment z_xv − τ log π_v (Menon et al. 2021,
        arXiv 2007.07314; T6c; the bias is ``imbalance.formulas.logit_adjustment``).

        ``pi``: the token prior π (default: the target marginal of ``counts``); every entry
        must be positive when τ > 0. τ = 1 turns a Bayes predictor of the cross-entropy into a
        Bayes predictor of the token-balanced cross-entropy (proofs/T6_mitigations.md); with
        weight decay the equilibrium is not Bayes, and the best τ is measured, not known.
        O(nnz + contexts + V) per λ: the tokens a context never saw share one logit z_a, so
        their adjusted mass is e^{z_a} Σ_{v unseen in x} π_v^{−τ}, the full sum minus the seen
        ones (no cancellation: seen logits exceed z_a, so the partition is ≥ e^{z_a} Σ_v π_v^{−τ}).
        """
        tau = as_nonnegative(tau, "tau")
        C = self.counts
        V = C.shape[1]
        target_n = np.bincount(C.indices, weights=C.data, minlength=V)
        prior = as_frequencies(target_n if pi is None else pi, "pi", V)
        a = logit_adjustment(prior, tau, name="pi")  # (V,)
        a = a - a.max()
        layout, order, active = _adjusted_layout(C, np.exp(a))  # exp(a) = π^(−τ) / max π^(−τ), in (0, 1]
        back = np.empty_like(order)
        back[order] = np.arange(order.size)
        lz_nz, lz_abs = np.atleast_2d(self.logits_nz), np.atleast_2d(self.logits_absent)
        L = lz_nz.shape[0]
        nll = np.empty((L, C.nnz))
        for i in range(L):
            z = np.concatenate([lz_nz[i] + a[C.indices], lz_abs[i, active]])[order]
            logp, _ = fixed_point.log_softmax_segments(z, layout)
            nll[i] = -logp[back[:C.nnz]]
        loss_tok, _, agg, balanced = _losses(C, nll)
        out = drop_lam_axis(dict(loss_per_token=loss_tok, aggregate_loss=agg, token_balanced_loss=balanced),
                            np.ndim(self.lam) == 0)
        return AdjustedLoss(tau, prior, **out)


def _adjusted_layout(C, w):
    """Segments of the adjusted softmax: every nonzero of ``C``, then one absent item per
    active context with multiplicity Σ_{v unseen in x} w_v. Returns (layout, order, active)
    with ``order`` sorting the items by segment."""
    n_ctx, V = C.shape
    row_n = np.asarray(C.sum(axis=1)).ravel()
    active = np.flatnonzero(row_n > 0)
    G = active.size
    nnz_row = np.diff(C.indptr)
    row_of_nz = np.repeat(np.arange(n_ctx), nnz_row)
    seen_w = np.bincount(row_of_nz, weights=w[C.indices], minlength=n_ctx)[active]
    A = np.where(nnz_row[active] == V, 0.0, np.maximum(np.sort(w).sum() - seen_w, 0.0))
    slot = np.full(n_ctx, -1)
    slot[active] = np.arange(G)
    seg = np.concatenate([slot[row_of_nz], np.arange(G)])
    order = np.argsort(seg, kind="stable")
    layout = Layout(seg=seg[order], q=np.zeros(seg.size), mult=np.concatenate([np.ones(C.nnz), A])[order],
                    n_seg=G, defect=np.zeros(G))
    return layout, order, active


def _losses(C, nll_nz):
    """Losses from the −log p of every nonzero of ``C`` (L, nnz): per token (L, V), NaN for
    tokens never seen as a target; per context (L, n_ctx), NaN for unseen contexts;
    aggregate (L,) and token-balanced (L,)."""
    n_ctx, V = C.shape
    L = nll_nz.shape[0]
    row_n = np.asarray(C.sum(axis=1)).ravel()
    active = row_n > 0
    target_n = np.bincount(C.indices, weights=C.data, minlength=V)
    seen = target_n > 0
    row_of_nz = np.repeat(np.arange(n_ctx), np.diff(C.indptr))
    loss_tok = np.full((L, V), np.nan)
    ctx_loss = np.full((L, n_ctx), np.nan)
    for i in range(L):
        w = C.data * nll_nz[i]                                   # (nnz,) c_xv (−log p_v|x)
        loss_tok[i, seen] = np.bincount(C.indices, weights=w, minlength=V)[seen] / target_n[seen]
        ctx_loss[i, active] = np.bincount(row_of_nz, weights=w, minlength=n_ctx)[active] / row_n[active]
    agg = (nll_nz @ C.data) / row_n.sum()
    return loss_tok, ctx_loss, agg, np.nanmean(loss_tok, axis=1)


@dataclass(frozen=True)
class _Items:
    """The items of one λ: each active context's observed tokens, then its absent-token item.

    ``pos_nz``/``pos_abs`` place the nonzeros of ``counts`` and the absent items among them;
    ``seg`` is the active-context index of each item, ``q``/``mult``/``defect`` as in
    :class:`~imbalance.theory.fixed_point.Layout`, ``context_prob`` P(x) of each item."""

    n: int
    seg: np.ndarray
    q: np.ndarray
    mult: np.ndarray
    defect: np.ndarray
    context_prob: np.ndarray
    pos_nz: np.ndarray
    pos_abs: np.ndarray
    active: np.ndarray


def _items(C, P_all) -> _Items:
    n_ctx, V = C.shape
    row_n = np.asarray(C.sum(axis=1)).ravel()
    active = np.flatnonzero(row_n > 0)
    G = active.size
    nnz_row = np.diff(C.indptr)[active]
    ctx_of_nz = np.repeat(np.arange(G), nnz_row)
    q_nz = C.data / row_n[np.repeat(np.arange(n_ctx), np.diff(C.indptr))]
    starts = np.concatenate([[0], np.cumsum(nnz_row + 1)[:-1]])
    n1 = int(nnz_row.sum()) + G
    pos_nz = np.arange(C.nnz) + ctx_of_nz          # position of each nonzero among the items
    pos_abs = starts + nnz_row                     # position of each absent item
    q1, m1, c1 = np.zeros(n1), np.ones(n1), np.zeros(n1)
    q1[pos_nz] = q_nz
    m1[pos_abs] = V - nnz_row
    c1[pos_nz] = C.data
    seg1 = np.repeat(np.arange(G), nnz_row + 1)
    defect = ratio_defect(c1, q1, row_n[active][seg1], seg1, G)
    return _Items(n=n1, seg=seg1, q=q1, mult=m1, defect=defect, context_prob=P_all[active][seg1],
                  pos_nz=pos_nz, pos_abs=pos_abs, active=active)


def _check_args(counts, lam, r, optimizer, batch_size, eps):
    C = as_count_matrix(counts, "counts")
    lams, scalar = as_lams(lam)
    r = as_positive(r, "r")
    if not (r * r > 0 and np.isfinite(r * r)):
        raise ValueError(f"r must have r² within float64's range, got r={r!r}")
    optimizer = as_choice(optimizer, "optimizer", {"sgd", "adamw"})
    if optimizer == "adamw" and batch_size is None:
        raise ValueError("batch_size is required for optimizer='adamw' (minibatch size B), got batch_size=None")
    if batch_size is not None:
        batch_size = as_positive_int(batch_size, "batch_size")
    return C, lams, scalar, r, optimizer, batch_size, as_nonnegative(eps, "eps")


def _response(items: _Items, lams, r, optimizer, batch_size, eps):
    """The flat layout over (λ, item) and the coordinate response h of T2 or T3."""
    L, G = lams.size, int(items.active.size)
    layout = Layout(seg=(np.arange(L)[:, None] * G + items.seg).ravel(), q=np.tile(items.q, L),
                    mult=np.tile(items.mult, L), n_seg=L * G, defect=np.tile(items.defect, L))
    P = np.tile(items.context_prob, L)                       # (L·n,)
    kap = kappa(items.context_prob, lams, r).ravel()         # (L·n,) P r²/λ
    if optimizer == "sgd":
        return layout, L2Response(kap, layout.q)
    B, q = float(batch_size), layout.q
    # AdamW logits reach H = r²P/(λ r √β) ~ rρ/λ; the nested root finder brackets log p in
    # [−s − H, −s + H] and, bisecting at worst, cannot narrow a bracket wider than ~1e60 to float64
    # resolution within its iteration budget
    H = np.max(kap / (r * np.sqrt((P * (1 - P) + B * P * P) / B)))
    if not H <= 1e60:
        raise ValueError(f"lam={lams.min()!r} is too small for the AdamW equilibrium in float64: its logits would "
                         f"reach {H:.3g} (r ρ/λ)")
    return layout, AdamWResponse(c=kap, q=q, A=P * q * (1 - q) / B, beta=(P * (1 - P) + B * P * P) / B, r=r, eps=eps)


def bigram_equilibrium(counts, lam, *, r=1.0, optimizer="sgd", batch_size=None, eps=1e-8) -> BigramEquilibrium:
    """Exact equilibrium of the bigram model for a (contexts × vocabulary) count matrix.

    ``optimizer="sgd"``: the minimiser of Σ_x P(x) CE(q(·|x), r w_x) + (λ/2)‖W‖² (T2).
    ``optimizer="adamw"``: the decoupled-decay equilibrium of T3 for minibatches of
    ``batch_size`` i.i.d. (context, token) pairs and Adam's ``eps``: per coordinate
    λ w = −E[g]/(√E[g²] + ε) with E[g] = P r (p − q) and
    E[g²] = r² (P σ² + P(1−P)(p − q)² + B P² (p − q)²)/B, σ² = q(1 − q).
    See ``proofs/T2_bigram.md`` and ``proofs/T3_adamw.md``.

    ``counts`` may be a dense array or any scipy.sparse matrix; time and memory are
    O(n_λ · (nnz + contexts)).
    """
    C, lams, scalar, r, optimizer, batch_size, eps = _check_args(counts, lam, r, optimizer, batch_size, eps)
    n_ctx, V = C.shape
    L = lams.size
    row_n = np.asarray(C.sum(axis=1)).ravel()
    P_all = row_n / row_n.sum()
    items = _items(C, P_all)
    layout, response = _response(items, lams, r, optimizer, batch_size, eps)
    sol = fixed_point.solve(layout, response)
    logp = sol.logp.reshape(L, items.n)
    p, z = sol.p.reshape(L, items.n), sol.logits.reshape(L, items.n)
    probs_absent, logits_absent = np.full((L, n_ctx), 1.0 / V), np.zeros((L, n_ctx))
    probs_absent[:, items.active] = p[:, items.pos_abs]
    logits_absent[:, items.active] = z[:, items.pos_abs]
    loss_tok, ctx_loss, agg, balanced = _losses(C, -logp[:, items.pos_nz])
    # ‖W‖² = Σ z²/r², the absent logit counted once per token a context never saw
    sq = (z * z) @ items.mult / (r * r)                      # (L,)
    fields = dict(probs_nz=p[:, items.pos_nz], probs_absent=probs_absent, logits_nz=z[:, items.pos_nz],
                  logits_absent=logits_absent, loss_per_token=loss_tok, context_loss=ctx_loss, aggregate_loss=agg,
                  token_balanced_loss=balanced, objective=agg + 0.5 * lams * sq)
    return BigramEquilibrium(lam=float(lams[0]) if scalar else lams, optimizer=optimizer, r=r,
                             batch_size=batch_size, eps=eps, counts=C, context_prob=P_all,
                             **drop_lam_axis(fields, scalar))
