"""The AdamW equilibrium of the factored bigram LM (T10) against AdamW training, next to the L2 (T7)
optimum: per-bucket tables on a synthetic or a real token stream, the batch-size question at a fixed
token budget, and the report section.

Every prediction is made without training and without a fitted parameter: the AdamW equilibrium
selected by the mean-field flow from the seed's own initialisation
(:func:`imbalance.theory.adamw_shared.factored_bigram_adamw_equilibrium`), and the convex L2 optimum
of the factored model (:func:`imbalance.theory.factored_bigram_equilibrium`; the L2 optimum of a
width-d model only when d ≥ min(C, V), otherwise a reference).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from ..corpus import tokenize_words
from ..sim import BigramTask, FactoredBigram, sweep
from ..theory import factored_bigram_equilibrium
from ..theory.adamw_shared import (
    UncertifiedWarning,
    batch_second_moment,
    bigram_law,
    factored_bigram_adamw_equilibrium,
    sample_moments,
    stationarity,
    tied_stationarity,
)
from .report import Check, Section, Settings

__all__ = ["seed_init", "text_task", "adamw_predictions", "equilibrium_buckets", "validation_rows", "batch_gap_rows",
           "worst_error", "run_stationarity", "stays_at_equilibrium", "bucket_comparison", "context_counts",
           "predicted_damage", "measured_damage", "lm_damage_rows", "damage_summary", "damage_markdown",
           "damage_comparison", "eps_rows", "adamw_shared_section"]


def seed_init(model, task, seed):
    """The (W0 (V, d), E0 (C, d)) that ``sweep`` draws for ``seed`` (same generator, same order); a tied
    model (``model.tied``) draws E0 (V, d) alone."""
    p = model.init(task, [torch.Generator().manual_seed(seed)], torch.float64)
    return p["E"][0].numpy() if model.tied else (p["W"][0].numpy(), p["E"][0].numpy())


def text_task(vocab_size: int, text=None):
    """(BigramTask, description) of a real token stream: word tokens of ``text`` (a path; default the
    corpus the toolkit ships), the ``vocab_size − 1`` most frequent types kept, the rest ``<unk>``."""
    if text is None:
        from ..lm.corpus import SHIPPED_CORPUS, shipped_corpus_text

        raw, name = shipped_corpus_text(), SHIPPED_CORPUS
    else:
        raw, name = Path(text).read_text(encoding="utf-8", errors="replace"), Path(text).name
    ids, vocab = tokenize_words(raw, vocab_size)
    return BigramTask.from_tokens(ids, len(vocab)), f"{name} ({ids.size:,} word tokens, V = {len(vocab)})"


def adamw_predictions(task, model, lams, seeds, batch_size, *, eps=1e-8, betas=(0.9, 0.999), **solver):
    """(loss_per_token (L, S, V), residual (L, S)): the AdamW equilibrium from each seed's init (``solver``:
    options of :func:`~imbalance.theory.adamw_shared.factored_bigram_adamw_equilibrium`)."""
    with warnings.catch_warnings():  # the residuals are returned and reported beside the predictions
        warnings.simplefilter("ignore", UncertifiedWarning)
        eqs = [factored_bigram_adamw_equilibrium(task.counts, np.asarray(lams, dtype=float),
                                                 init=seed_init(model, task, s), batch_size=batch_size, eps=eps,
                                                 betas=betas, r=task.r, tied=model.tied, **solver) for s in seeds]
    return np.stack([e.loss_per_token for e in eqs], 1), np.stack([e.residual for e in eqs], 1)


def equilibrium_buckets(task, lams, *, width=8, batch_sizes=(8, 64), seed=0, init_scale=0.1):
    """Theory only: (bucket ids, {"l2": (L, n_b), B: (L, n_b) for B in ``batch_sizes``}), the per-bucket
    loss of the L2 (T7) optimum and of the AdamW equilibrium (from ``seed``'s init) against λ."""
    model = FactoredBigram(width=width, init_scale=init_scale)
    lams = np.asarray(lams, dtype=float)
    pi = task.token_probs
    ids, out = metrics.bucket_loss(factored_bigram_equilibrium(task.counts, lams, lams).loss_per_token, pi)
    table = {"l2": out}
    for B in batch_sizes:
        pred, _ = adamw_predictions(task, model, lams, (seed,), B)
        table[B] = metrics.bucket_loss(pred[:, 0], pi)[1]  # (L, n_b)
    return ids, table


def bucket_comparison(ax, rows, B, lam):
    """On ``ax``: one (B, λ) of :func:`validation_rows` — simulated bucket loss (seed mean, 95 % CI) as
    points, the AdamW (T10) equilibrium and the L2 (T7) optimum as lines. Returns ``ax``."""
    rs = [r for r in rows if r["B"] == B and r["lam"] == lam]
    b = [r["bucket"] for r in rs]
    ax.errorbar(b, [r["sim"] for r in rs], yerr=[r["sim_ci"] for r in rs], fmt="o", color="k", label="AdamW runs")
    ax.plot(b, [r["adamw"] for r in rs], "-", color="C0", label="AdamW equilibrium (T10)")
    ax.plot(b, [r["l2"] for r in rs], "--", color="C3", label="L2 optimum (T7)")
    ax.set_xlabel("frequency bucket (0 = most frequent)")
    ax.set_ylabel("bucket loss (nats)")
    ax.set_title(f"B = {B}, λ = {lam:g}")
    return ax


def context_counts(task):
    """(counts (V × V) CSR, lag) of the pairs (context, next token) that a factored bigram can use on a
    language-model task: consecutive tokens of a :class:`~imbalance.sim.TokenStreamTask`'s training
    stream (lag 1); on a :class:`~imbalance.sim.SequenceTask` (lag-k copy process, where the previous
    token predicts nothing beyond the unigram) the pairs (x_{t−k}, x_t) inside its training sequences,
    whose law is exactly the process's predictive law."""
    import scipy.sparse as sp

    from ..corpus import bigram_counts

    if hasattr(task, "train_stream"):
        return bigram_counts(task.train_stream.numpy(), task.vocab_size), 1
    k, x = int(task.lag), task.train.numpy()  # (n, T + 1)
    ctx, tgt = x[:, :-k].ravel(), x[:, k:].ravel()  # (n (T + 1 − k),)
    C = sp.csr_matrix((np.ones(ctx.size), (ctx, tgt)), shape=(task.vocab_size, task.vocab_size))
    C.sum_duplicates()
    return C, k


def predicted_damage(task, lams, *, batch_size, width, seed=0, init_scale=0.1, **solver):
    """The factored AdamW theory's per-bucket damage on a language-model task, with no fitted parameter:
    (bucket ids, damage (L, n_b), residual (L,)). The pairs of :func:`context_counts` (the training split);
    damage = bucket loss of the T10 equilibrium at λ (``batch_size`` = tokens per batch, init of a
    width-``width`` factored model from ``seed``) minus that of the empirical law q of those pairs (the
    λ → 0 optimum of a model wide enough), both training-set losses, bucketed by ``task.token_probs``;
    ``solver``: options of the equilibrium solver (e.g. ``fallback=False``, ``max_steps``)."""
    counts, _ = context_counts(task)
    pi = task.token_probs
    J = counts.tocoo()
    q = J.data / np.asarray(counts.sum(axis=1)).ravel()[J.row]
    base = np.bincount(J.col, weights=-J.data * np.log(q), minlength=pi.size) / np.maximum(
        np.asarray(counts.sum(axis=0)).ravel(), 1)  # (V,) per-token loss of q itself
    bigram = BigramTask(counts)
    model = FactoredBigram(width=width, init_scale=init_scale)
    pred, resid = adamw_predictions(bigram, model, lams, (seed,), batch_size, **solver)  # (L, 1, V), (L, 1)
    seen = bigram.token_probs > 0  # a type never a target in the pairs has no loss: leave it out
    p = np.where(seen, pi, 0.0)
    ids, bl = metrics.bucket_loss(np.where(seen, pred[:, 0], 0.0), p)
    return ids, bl - metrics.bucket_loss(np.where(seen, base, 0.0), p)[1], resid[:, 0]


def measured_damage(result, pi):
    """(bucket ids, damage (L − 1, n_b) seed mean, 95 % CI) of a sweep whose first λ is 0: the training
    per-token loss at each λ > 0 minus that at λ = 0, seed by seed (``result.loss_per_token``); the CI is
    NaN with one seed."""
    if float(result.lams[0]) != 0.0:
        raise ValueError(f"result.lams must start at 0, got lams={result.lams!r}")
    ids, bl = metrics.bucket_loss(result.loss_per_token, pi)  # (L, S, n_b)
    if bl.shape[1] < 2:  # one seed: no interval
        return ids, (bl[1:] - bl[:1])[:, 0], np.full((bl.shape[0] - 1, bl.shape[2]), np.nan)
    m, h = metrics.mean_ci(bl[1:] - bl[:1], axis=1)
    return ids, m, h


def lm_damage_rows(result, task, model, tokens_per_batch, *, fast=False):
    """The small-LM comparison with no fitted parameter: one row per (λ > 0, bucket) with the transformer's
    measured training damage (``measured``, seed mean, ``measured_ci`` its 95 % CI; :func:`measured_damage`
    of a sweep whose first λ is 0) and the factored AdamW theory's (``predicted``, :func:`predicted_damage`
    at B = ``tokens_per_batch``, width = the transformer's ``d_model``) with its certificate ``residual``.
    The equilibria are computed by the continuation alone, without the slow flow fallback (``fast``: at
    most 20 implicit steps), so a ``residual`` above 1e-10 marks an uncertified prediction."""
    lams = np.asarray(result.lams[1:], float)
    bid, meas, ci = measured_damage(result, task.token_probs)
    pid, pred, resid = predicted_damage(task, lams, batch_size=tokens_per_batch, width=model.d_model, fallback=False,
                                        **({"max_steps": 20} if fast else {}))
    col = {int(b): k for k, b in enumerate(pid)}
    return [dict(lam=float(lam), bucket=int(b), measured=float(meas[i, j]), measured_ci=float(ci[i, j]),
                 predicted=float(pred[i, col[int(b)]]) if int(b) in col else np.nan, residual=float(resid[i]))
            for i, lam in enumerate(lams) for j, b in enumerate(bid)]


def damage_summary(rows) -> str:
    """One plain sentence on how close the predicted damage is to the measured one, at the largest λ."""
    lam = max(r["lam"] for r in rows)
    rs = [r for r in rows if r["lam"] == lam and np.isfinite(r["predicted"])]
    if not rs:
        return f"At λ = {lam:g} no bucket has a prediction."
    inside = sum(abs(r["predicted"] - r["measured"]) <= r["measured_ci"] for r in rs)
    ratio = ", ".join(f"{r['predicted'] / r['measured']:.2g}" if r["measured"] > 0 else "–" for r in rs)
    worst = max(r["residual"] for r in rows)
    cert = "certified" if worst < 1e-10 else f"not certified (max|F| up to {worst:.1g})"
    ci = (f"lies inside the seed 95 % CI in {inside} of {len(rs)} buckets" if np.isfinite(rs[0]["measured_ci"])
          else "has no CI to lie in (one seed)")
    return (f"At λ = {lam:g}, predicted/measured damage by bucket (0 = most frequent) is {ratio}; the prediction "
            f"{ci}. The equilibria are {cert}.")


def damage_markdown(rows) -> str:
    """The rows of :func:`lm_damage_rows` as a Markdown table."""
    lines = ["| λ | bucket | transformer damage (± 95 % CI) | factored AdamW theory |", "|---|---|---|---|"]
    lines += [f"| {r['lam']:g} | {r['bucket']} | {r['measured']:+.3f} ± {r['measured_ci']:.3f} | "
              f"{r['predicted']:+.3f} |" for r in rows]
    return "\n".join(lines)


def damage_comparison(ax, rows):
    """On ``ax``: measured damage per bucket (points, 95 % CI) and the predicted one (lines), one colour per λ."""
    for c, lam in enumerate(dict.fromkeys(r["lam"] for r in rows)):
        rs = [r for r in rows if r["lam"] == lam]
        b = [r["bucket"] for r in rs]
        ax.errorbar(b, [r["measured"] for r in rs], yerr=[r["measured_ci"] for r in rs], fmt="o", color=f"C{c}",
                    label=f"transformer, λ = {lam:g}")
        ax.plot(b, [r["predicted"] for r in rs], "-", color=f"C{c}", label=f"factored AdamW theory, λ = {lam:g}")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set_xlabel("frequency bucket (0 = most frequent)")
    ax.set_ylabel("training loss at λ − at λ = 0 (nats)")
    return ax


class _StartAt(FactoredBigram):
    """A factored bigram whose initialisation is given: W (S, V, d), E (S, C, d), one per seed."""

    def __init__(self, W, E):
        super().__init__(width=W.shape[-1])
        self.start = (W, E)

    def init(self, task, gens, dtype):
        # copies: training updates its parameters in place, and the start must not move with them
        return {"E": torch.tensor(self.start[1], dtype=dtype), "W": torch.tensor(self.start[0], dtype=dtype)}


def stays_at_equilibrium(task, lam, *, batch_size, width=8, seeds=(0, 1, 2), steps=8000, lr=1e-2, init_scale=0.1):
    """Stability of the prediction under stochastic AdamW: train from the T10 equilibrium itself (one per
    seed's init). Returns (steps (n_eval,), predicted bucket loss (n_b,), final-iterate bucket loss at
    each logged step (n_eval, n_b), seed means, and max|F| at the runs' averaged parameters (S,))."""
    model = FactoredBigram(width=width, init_scale=init_scale)
    eqs = [factored_bigram_adamw_equilibrium(task.counts, lam, init=seed_init(model, task, s), batch_size=batch_size,
                                             r=task.r) for s in seeds]
    start = _StartAt(np.stack([e.W for e in eqs]), np.stack([e.E.T for e in eqs]))  # (S, V, d), (S, C, d)
    res = sweep(task, [lam], model=start, optimizer="adamw", steps=steps, batch_size=batch_size, lr=lr,
                seeds=tuple(seeds), average_last=steps // 2, progress=False, eval_every=max(1, steps // 4))
    pi = task.token_probs
    _, pred = metrics.bucket_loss(np.stack([e.loss_per_token for e in eqs]), pi)  # (S, n_b)
    _, curve = metrics.bucket_loss(res.curve_loss_per_token[:, 0], pi)  # (n_eval, S, n_b)
    return res.curve_steps, pred.mean(0), curve.mean(1), run_stationarity(res, task, batch_size)[0]


def _sim(task, model, lams, optimizer, *, steps, batch_size, lr, seeds, betas, full=False):
    """Iterate-averaged (last quarter) per-token loss of a batched sweep, (L, S, V) (``full``: the result)."""
    res = sweep(task, list(lams), model=model, optimizer=optimizer, steps=steps, batch_size=batch_size, lr=lr,
                seeds=tuple(seeds), average_last=max(1, steps // 4), progress=False, eval_every=steps, betas=betas)
    return res if full else res.loss_per_token_avg


def run_stationarity(result, task, batch_size, eps=1e-8):
    """max|F| (T10's stationarity, in units of one normalised update) at the iterate-averaged parameters
    of each (λ, seed) of an AdamW factored-bigram sweep, (L, S): ≈ 0 where the run sits at an equilibrium."""
    law = bigram_law(task.counts)
    E = result.params_avg["E"]  # (L, S, C, d)
    W = result.params_avg.get("W")  # (L, S, V, d); None when tied
    out = np.empty(E.shape[:2])
    for i, lam in enumerate(result.lams):
        for s in range(E.shape[1]):
            Es = np.asarray(E[i, s], float)
            if W is None:
                out[i, s] = np.abs(tied_stationarity(Es, law, float(lam), batch_size=batch_size, eps=eps,
                                                     r=task.r)).max()
                continue
            fW, fE = stationarity(np.asarray(W[i, s], float), Es, law, float(lam), batch_size=batch_size, eps=eps,
                                  r=task.r)
            out[i, s] = max(np.abs(fW).max(), np.abs(fE).max())
    return out


def validation_rows(task, *, width=8, lams=(0.2, 0.4, 0.8), batch_sizes=(8, 64), seeds=(0, 1, 2), steps=10_000,
                    lr=1e-2, sgd_lr=0.2, init_scale=0.1, betas=(0.9, 0.999), sgd=True, tied=False):
    """One row per (B, λ, bucket): AdamW simulation (seed mean, 95 % CI), AdamW theory (mean over the
    same seeds' inits; ``adamw_seed_sd`` its spread), L2 (T7) optimum, SGD simulation (lr ``sgd_lr``; with
    ``sgd``),
    the bucket's smallest B π/(1 − β₂) (mean-field validity), the worst certificate max|F| of the
    prediction (``residual``) and of the runs' averaged parameters (``sim_residual``, :func:`run_stationarity`).
    ``tied``: the tied model (W = E, one decay), its T10 equilibrium and its tied L2 optimum."""
    model = FactoredBigram(width=width, init_scale=init_scale, tied=tied)
    pi = task.token_probs
    L = np.asarray(lams, float)
    l2 = (factored_bigram_equilibrium(task.counts, lam=L, tied=True) if tied
          else factored_bigram_equilibrium(task.counts, L, L)).loss_per_token
    ids = metrics.frequency_buckets(pi)
    rows = []
    for B in batch_sizes:
        kw = dict(steps=steps, batch_size=B, seeds=seeds, betas=betas)
        res = _sim(task, model, lams, "adamw", lr=lr, full=True, **kw)
        sim, sim_resid = res.loss_per_token_avg, run_stationarity(res, task, B)  # (L, S, V), (L, S)
        sgd_sim = _sim(task, model, lams, "sgd", lr=sgd_lr, **kw) if sgd else None
        pred, resid = adamw_predictions(task, model, lams, seeds, B, betas=betas)
        for i, lam in enumerate(lams):
            bid, bs = metrics.bucket_loss(sim[i], pi)  # (S, n_b)
            _, bp = metrics.bucket_loss(pred[i], pi)  # (S, n_b)
            _, b2 = metrics.bucket_loss(l2[i], pi)
            m, h = metrics.mean_ci(bs, axis=0)
            if sgd:
                ms, hs = metrics.mean_ci(metrics.bucket_loss(sgd_sim[i], pi)[1], axis=0)
            for j, b in enumerate(bid):
                rows.append(dict(B=int(B), lam=float(lam), bucket=int(b), sim=float(m[j]), sim_ci=float(h[j]),
                                 adamw=float(bp[:, j].mean()), adamw_seed_sd=float(bp[:, j].std(ddof=1)),
                                 l2=float(b2[j]), **(dict(sgd=float(ms[j]), sgd_ci=float(hs[j])) if sgd else {}),
                                 min_window=float(B * pi[ids == b].min() / (1 - betas[1])),
                                 residual=float(resid[i].max()), sim_residual=float(sim_resid[i].max())))
    return rows


def batch_gap_rows(task, *, lam=0.4, sgd_lam=None, batch_sizes=(8, 32, 128), tokens=131_072, width=8,
                   seeds=(0, 1, 2), lr=1e-2, sgd_lr=0.2, init_scale=0.1):
    """The batch-size question at fixed λ and a fixed token budget (steps = tokens / B): one row per
    (optimizer, B) with the rarest-minus-most-frequent bucket gap, simulated (seed mean ± 95 % CI) and
    predicted (AdamW: T10 equilibrium from each seed's init; SGD: the L2 optimum, which has no B).
    ``sgd_lam`` (default ``lam``): the L2 decay of the SGD runs — coupled and decoupled decay of the
    same λ are not comparable (the L2 optimum can be uniform where AdamW still predicts well)."""
    model = FactoredBigram(width=width, init_scale=init_scale)
    pi = task.token_probs
    sgd_lam = lam if sgd_lam is None else sgd_lam
    _, b2 = metrics.bucket_loss(factored_bigram_equilibrium(task.counts, sgd_lam, sgd_lam).loss_per_token, pi)
    rows = []
    for B in batch_sizes:
        steps = int(tokens // B)
        pred, resid = adamw_predictions(task, model, [lam], seeds, B)
        _, bp = metrics.bucket_loss(pred[0], pi)  # (S, n_b)
        for opt, lr_opt, lam_opt in (("adamw", lr, lam), ("sgd", sgd_lr, sgd_lam)):
            sim = _sim(task, model, [lam_opt], opt, steps=steps, batch_size=B, lr=lr_opt, seeds=seeds,
                       betas=(0.9, 0.999))
            _, bs = metrics.bucket_loss(sim[0], pi)  # (S, n_b)
            m, h = metrics.mean_ci(bs[:, -1] - bs[:, 0])
            theory = float((bp[:, -1] - bp[:, 0]).mean()) if opt == "adamw" else float(b2[-1] - b2[0])
            rows.append(dict(optimizer=opt, B=int(B), steps=steps, lam=float(lam_opt), gap_sim=float(m),
                             gap_ci=float(h), gap_theory=theory, tail_sim=float(bs[:, -1].mean()),
                             head_sim=float(bs[:, 0].mean()), tail_B_pi=float(B * pi[pi > 0].min()),
                             residual=float(resid.max()) if opt == "adamw" else np.nan))
    return rows


def eps_rows(task, eps_values, *, lam=0.2, batch_size=64, width=8, seeds=(0, 1, 2), steps=10_000, lr=1e-2,
             init_scale=0.1, betas=(0.9, 0.999)):
    """Adam's ε against the T10 prediction: one row per (ε, bucket) with the AdamW runs at that ε (seed mean,
    95 % CI), the T10 equilibrium with that ε (``adamw``) and with ε = 1e-8 (``adamw_small_eps``), the L2
    optimum at decay λε (``l2_lam_eps``: the ε-dominated limit, where E[g]/(√E[g²] + ε) ≈ E[g]/ε makes the
    stationarity λε θ = −E[g]; NaN where λε is below the solver's range), the bucket's median over its
    unembedding rows of √E[g²]/ε at the predicted equilibrium (``grad_over_eps``), its smallest B π/(1 − β₂)
    (``min_window``), and the worst residuals."""
    model = FactoredBigram(width=width, init_scale=init_scale)
    pi, law = task.token_probs, bigram_law(task.counts)
    small, _ = adamw_predictions(task, model, [lam], seeds, batch_size)  # (1, S, V)
    rows = []
    for eps in eps_values:
        res = sweep(task, [lam], model=model, optimizer="adamw", steps=steps, batch_size=batch_size, lr=lr,
                    seeds=tuple(seeds), average_last=max(1, steps // 4), progress=False, eval_every=steps, eps=eps,
                    betas=betas)
        eqs = [factored_bigram_adamw_equilibrium(task.counts, lam, init=seed_init(model, task, s),
                                                 batch_size=batch_size, eps=eps, r=task.r) for s in seeds]
        ratio = np.stack([_grad_over_eps(e, law, batch_size, eps, task.r) for e in eqs])  # (S, V)
        ids, bs = metrics.bucket_loss(res.loss_per_token_avg[0], pi)  # (S, n_b)
        m, h = metrics.mean_ci(bs, axis=0)
        bp = metrics.bucket_loss(np.stack([e.loss_per_token for e in eqs]), pi)[1].mean(0)  # (n_b,)
        b0 = metrics.bucket_loss(small[0], pi)[1].mean(0)
        bl2 = (metrics.bucket_loss(factored_bigram_equilibrium(task.counts, lam * eps, lam * eps).loss_per_token,
                                   pi)[1] if lam * eps >= 1e-5 else np.full(ids.size, np.nan))
        bucket = metrics.frequency_buckets(pi)
        for j, b in enumerate(ids):
            rows.append(dict(eps=float(eps), bucket=int(b), sim=float(m[j]), sim_ci=float(h[j]), adamw=float(bp[j]),
                             adamw_small_eps=float(b0[j]), l2_lam_eps=float(bl2[j]),
                             grad_over_eps=float(np.median(ratio[:, bucket == b])),
                             min_window=float(batch_size * pi[bucket == b].min() / (1 - betas[1])),
                             residual=float(max(e.residual for e in eqs)),
                             sim_residual=float(run_stationarity(res, task, batch_size, eps).max())))
    return rows


def _grad_over_eps(eq, law, batch_size, eps, r):
    """(V,) per token: median over its unembedding row of √E[g²]/ε at the equilibrium ``eq``."""
    mW, sW, _, _ = sample_moments(eq.W, eq.E.T, law, r)
    return np.median(np.sqrt(batch_second_moment(mW, sW, batch_size)), axis=1) / eps


def worst_error(rows, key="adamw", min_window=0.0):
    """max over rows of |theory/sim − 1| (rows whose bucket has B π/(1 − β₂) ≥ ``min_window``)."""
    errs = [abs(r[key] / r["sim"] - 1) for r in rows if r["min_window"] >= min_window]
    return float(max(errs)) if errs else np.nan


def adamw_shared_section(st: Settings) -> Section:
    """T10 on real text: the AdamW equilibrium of the factored bigram next to the L2 optimum against
    AdamW training (one B, three λ, ``st.seeds`` seeds); the check is the 3 % per-bucket criterion."""
    V, steps = (16, 2000) if st.fast else (32, 10_000)
    try:
        task, source = text_task(V, st.text)
    except ValueError:  # the shipped corpus needs the [lm] extra: fall back to a synthetic stream
        task, source = BigramTask.stochastic_zipf(V, 1.1, 0.7), f"a Zipf(1.1) stochastic bigram (V = {V})"
    seeds = tuple(range(max(2, st.seeds)))
    lams = (0.4, 0.8) if st.fast else (0.2, 0.4, 0.8)
    rows = validation_rows(task, width=4 if st.fast else 8, lams=lams, batch_sizes=(64,), seeds=seeds, steps=steps,
                           sgd=not st.fast)
    err_adamw, err_l2 = worst_error(rows), worst_error(rows, "l2")
    from .exact import _figure

    fig, axs = _figure().subplots(1, len(lams), figsize=(4.2 * len(lams), 3.6), sharey=True)
    for ax, lam in zip(axs, lams):
        bucket_comparison(ax, rows, 64, lam)
    axs[0].legend(fontsize=7)
    fig.tight_layout()
    text = (f"Factored bigram LM (E and W decayed, AdamW, B = 64, {len(seeds)} seeds, {steps:,} steps, lr 1e-2, "
            f"iterate average over the last quarter) on {source}. `adamw` is the T10 equilibrium of each seed's "
            f"initialisation (mean-field flow, no fitted parameter), `l2` the T7 optimum: against the same AdamW runs "
            f"the largest per-bucket error is {100 * err_adamw:.1f} % for T10 and {100 * err_l2:.0f} % for T7. "
            "`min_window` is the bucket's smallest B π/(1 − β₂), which the mean-field law needs ≫ 1.")
    return Section("adamw_shared", "T10 — the AdamW equilibrium of a shared representation", text,
                   rows, {"adamw_shared": fig}, [Check("T10", "factored bigram, AdamW runs vs T10 equilibrium "
                                           "(max rel. err per bucket)", err_adamw, 0.03)])
