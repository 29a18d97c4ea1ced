"""The factored bigram LM trained with ``FairAdamW`` (checks of T6b's factored extension against simulation).

Model z_x = r W e_x (``imbalance.sim.FactoredBigram``: unembedding W (V, d), embedding E (C, d), both
decayed), every variant's options on the rows of both matrices, as ``imbalance.optim.hooks.fair_adamw``
puts them on a language model's token rows. R = λ's × seeds replicas of a variant, as parameters of one
``FairAdamW``: one group per (variant, λ, matrix), holding the seeds' replicas as one (S·rows, d) matrix
(row options act on each row alone; row scale tiled), or with ``coupled`` as (rows, S·d), so that the mean
over rows stays within each replica's columns. Every replica draws its own batches; the initialisation of
seed s is the sweep's (``imbalance.reproduce.adamw_shared.seed_init``), so T10's prediction from the same
init is comparable seed by seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .._validate import as_positive_int
from .adamw import FairAdamW

__all__ = ["FactoredRun", "train_factored", "VARIANTS", "variant_options", "factored_rows", "markdown_table"]


@dataclass(frozen=True)
class FactoredRun:
    """``loss_per_token_avg`` (n_variants, L, S, V): per-token training loss at the iterate average of the
    last ``average_last`` steps; ``loss_per_token`` the same at the final iterate; ``variants`` in order."""

    loss_per_token_avg: np.ndarray
    loss_per_token: np.ndarray
    variants: tuple
    lams: np.ndarray
    seeds: tuple
    steps: int
    average_last: int


def _store(init, S, rows, d, coupled):
    """The replicas (S, rows, d) of one matrix as one leaf parameter and its (S, rows, d) view."""
    if coupled:
        p = init.permute(1, 0, 2).reshape(rows, S * d).clone().requires_grad_(True)   # (rows, S·d)
        return p, p.view(rows, S, d).permute(1, 0, 2)                                  # (S, rows, d)
    p = init.reshape(S * rows, d).clone().requires_grad_(True)                         # (S·rows, d)
    return p, p.view(S, rows, d)


def _groups(variant, lam, W0, E0):
    """(FairAdamW groups for W and E, their (S, rows, d) views) of one (variant, λ)."""
    unknown = set(variant) - {"row_decay_scale", "lazy", "coupled"}
    if unknown:
        raise ValueError(f"variants may set row_decay_scale, lazy, coupled; got {sorted(unknown)}")
    coupled = bool(variant.get("coupled", False))
    S, d = W0.shape[0], W0.shape[2]
    groups, views = [], []
    for init in (W0, E0):
        rows = init.shape[1]
        p, view = _store(init, S, rows, d, coupled)
        opts = dict(variant)
        scale = opts.get("row_decay_scale")
        if scale is not None:
            scale = np.asarray(scale, dtype=np.float64)
            if scale.shape != (rows,):
                raise ValueError(f"row_decay_scale must have one entry per row ({rows}), got shape {scale.shape}")
            opts["row_decay_scale"] = scale if coupled else np.tile(scale, S)
        groups.append({"params": [p], "weight_decay": float(lam), **opts})
        views.append(view)
    return groups, views


def train_factored(task, lams, *, model, batch_size, lr, steps, variants=({},), seeds=(0,), average_last=None,
                   betas=(0.9, 0.999), eps=1e-8, seed=0) -> FactoredRun:
    """Train ``model`` (a ``FactoredBigram``, untied) on ``task`` (a ``BigramTask``) with ``FairAdamW`` for
    every variant (a dict of its group options), λ in ``lams`` and seed in ``seeds``, all in one loop.

    Batches of ``batch_size`` i.i.d. pairs per replica from one ``torch.Generator(seed)``; the gradient of
    each replica is its own minibatch-mean cross-entropy gradient (autograd, float64).
    """
    if model.tied:
        raise ValueError("train_factored trains the untied model, got tied=True")
    B = as_positive_int(batch_size, "batch_size")
    steps = as_positive_int(steps, "steps")
    average_last = steps // 4 if average_last is None else as_positive_int(average_last, "average_last")
    if average_last > steps:
        raise ValueError(f"average_last must be <= steps={steps}, got average_last={average_last}")
    lams = np.atleast_1d(np.asarray(lams, dtype=np.float64))
    seeds, variants = tuple(int(s) for s in seeds), tuple(dict(v) for v in variants)
    init = model.init(task, [torch.Generator().manual_seed(s) for s in seeds], torch.float64)
    W0, E0 = init["W"], init["E"]                                                      # (S, V, d), (S, C, d)
    groups, views = [], []
    for v in variants:
        for lam in lams:
            g, w = _groups(v, lam, W0, E0)
            groups += g
            views.append(w)
    opt = FairAdamW(groups, lr=lr, betas=betas, eps=eps)
    S, V = len(seeds), task.vocab_size
    N = len(views) * S
    gen = torch.Generator().manual_seed(int(seed))
    total = None
    for step in range(steps):
        ctx, tgt = (t.view(N, B) for t in task.sample(gen, N * B))                     # (N, B) each
        W = torch.cat([w for w, _ in views])                                           # (N, V, d)
        E = torch.cat([e for _, e in views])                                           # (N, C, d)
        e = task.r * torch.gather(E, 1, ctx.unsqueeze(-1).expand(-1, -1, E.shape[2]))  # (N, B, d)
        logits = torch.bmm(e, W.transpose(1, 2))                                       # (N, B, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(N * B, V), tgt.reshape(-1), reduction="sum") / B
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        if step >= steps - average_last:
            with torch.no_grad():
                snap = (torch.cat([w for w, _ in views]), torch.cat([e for _, e in views]))
                total = snap if total is None else (total[0] + snap[0], total[1] + snap[1])
    with torch.no_grad():
        final = (torch.cat([w for w, _ in views]), torch.cat([e for _, e in views]))
        shape = (len(variants), lams.size, S, V)
        avg = _loss_per_token(task, total[0] / average_last, total[1] / average_last).reshape(shape)
        last = _loss_per_token(task, *final).reshape(shape)
    return FactoredRun(loss_per_token_avg=avg, loss_per_token=last, variants=variants, lams=lams, seeds=seeds,
                       steps=steps, average_last=average_last)


def _loss_per_token(task, W, E) -> np.ndarray:
    """W (N, V, d), E (N, C, d) → exact per-token training loss (N, V) of the bigram law."""
    logp = torch.log_softmax(task.r * torch.bmm(E, W.transpose(1, 2)), dim=-1)       # (N, C, V)
    return task.loss_per_token(logp).numpy()


VARIANTS = ("AdamW", "row-scaled ρ", "lazy decay", "lazy moments (LazyAdam)", "coupled (shared v)")
_HOOK_NAMES = dict(zip(VARIANTS, ("adamw", "row-scaled", "lazy-decay", "lazy-moments", "coupled")))


def variant_options(name, pi, batch_size) -> dict:
    """``FairAdamW`` group options of a variant (``VARIANTS``), as ``hooks.variant_options`` gives them to a
    language model's token rows: the row scale is ρ(B π) of the target frequencies, for W and E rows alike."""
    from .hooks import variant_options as hook_options

    if name not in _HOOK_NAMES:
        raise ValueError(f"name must be one of {VARIANTS}, got name={name!r}")
    return hook_options(_HOOK_NAMES[name], pi=pi, tokens_per_batch=batch_size)


def factored_rows(task, *, width=4, lams=(0.4, 0.8), batch_size=64, seeds=(0, 1, 2, 3), steps=8000, lr=1e-2,
                  init_scale=0.1, betas=(0.9, 0.999), eps=1e-8, variants=VARIANTS, seed=0) -> list[dict]:
    """One row per (variant, λ, bucket): T6b's factored AdamW prediction (mean over the seeds' inits of the
    equilibrium, ``adamw_seed_sd`` its spread; ``residual`` the worst certificate max|F|) against
    ``FairAdamW`` training from the same inits (seed mean and 95 % CI of the iterate-averaged bucket loss),
    and the verdict from the theory alone (``factored_fairness_verdict`` on the seed-mean bucket damage)."""
    from .. import metrics
    from ..sim import FactoredBigram
    from ..theory.fair_factored import bucket_damage, factored_fair_adamw_equilibrium, factored_fairness_verdict
    from ..theory.loss_split import bayes_loss_per_token

    if task.n_contexts != task.vocab_size:
        raise ValueError(f"factored_rows scales W and E rows alike: needs contexts = vocabulary, got "
                         f"({task.n_contexts}, {task.vocab_size})")
    model = FactoredBigram(width=width, init_scale=init_scale)
    pi, lams = task.token_probs, np.asarray(lams, dtype=np.float64)
    opts = [variant_options(v, pi, batch_size) for v in variants]
    inits = model.init(task, [torch.Generator().manual_seed(s) for s in seeds], torch.float64)
    pred, resid = [], []
    for o in opts:
        th = dict(decay_scale=o.get("row_decay_scale"), lazy=o.get("lazy", "none"), coupled=o.get("coupled", False))
        eqs = [factored_fair_adamw_equilibrium(task.counts, lams, init=(inits["W"][i].numpy(), inits["E"][i].numpy()),
                                               batch_size=batch_size, eps=eps, betas=betas, r=task.r, **th)
               for i in range(len(seeds))]
        pred.append(np.stack([e.loss_per_token for e in eqs], 1))              # (L, S, V)
        resid.append(max(float(np.max(e.residual)) for e in eqs))
    run = train_factored(task, lams, model=model, batch_size=batch_size, lr=lr, steps=steps, variants=opts,
                         seeds=seeds, betas=betas, eps=eps, seed=seed)
    ids, dmg = bucket_damage(np.stack(pred).mean(2), task.counts)             # (n_var, L, n_b)
    bayes = metrics.bucket_loss(bayes_loss_per_token(task.counts), pi)[1]    # (n_b,)
    plain = dmg[list(variants).index("AdamW")] if "AdamW" in variants else None
    rows = []
    for k, name in enumerate(variants):
        for i, lam in enumerate(lams):
            _, bp = metrics.bucket_loss(pred[k][i], pi)                       # (S, n_b)
            _, bs = metrics.bucket_loss(run.loss_per_token_avg[k, i], pi)     # (S, n_b)
            m, h = metrics.mean_ci(bs, axis=0)
            verdict = factored_fairness_verdict(dmg[k, i], plain[i]) if plain is not None else ""
            for j, b in enumerate(ids):
                rows.append(dict(variant=name, lam=float(lam), bucket=int(b), verdict=verdict, bayes=float(bayes[j]),
                                 theory=float(bp[:, j].mean()), adamw_seed_sd=float(bp[:, j].std(ddof=1)),
                                 sim=float(m[j]), sim_ci=float(h[j]), residual=resid[k],
                                 min_window=float(batch_size * pi[metrics.frequency_buckets(pi) == b].min()
                                                  / (1 - betas[1]))))
    return rows


def markdown_table(rows, settings: str) -> str:
    """One line per (variant, λ): verdict, predicted damage (bucket loss − Bayes loss) of the rarest and the
    most frequent bucket, predicted / measured loss of every bucket, the largest relative error and the
    largest 95 % CI relative to the measured loss."""
    keys = sorted({(r["variant"], r["lam"]) for r in rows}, key=lambda k: (VARIANTS.index(k[0]), k[1]))
    buckets = sorted({r["bucket"] for r in rows})
    head = ("| variant | λ | verdict (theory) | damage rarest / most frequent (theory) | "
            + " | ".join(f"bucket {b}: predicted / measured" for b in buckets)
            + " | max rel. error | max CI / loss |")
    lines = [settings, "", head, "|" + "---|" * (len(buckets) + 6)]
    for name, lam in keys:
        rs = sorted((r for r in rows if r["variant"] == name and r["lam"] == lam), key=lambda r: r["bucket"])
        cells = " | ".join(f"{r['theory']:.3f} / {r['sim']:.3f}" for r in rs)
        err = max(abs(r["theory"] / r["sim"] - 1) for r in rs)
        ci = max(r["sim_ci"] / r["sim"] for r in rs)
        dmg = f"{rs[-1]['theory'] - rs[-1]['bayes']:.3f} / {rs[0]['theory'] - rs[0]['bayes']:.3f}"
        lines.append(f"| {name} | {lam:g} | {rs[0]['verdict']} | {dmg} | {cells} | {100 * err:.2f} % | "
                     f"{100 * ci:.2f} % |")
    return "\n".join(lines)
