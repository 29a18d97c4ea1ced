"""FairAdamW variants on the small LM of the paradox (regime (a): the synthetic copy task).

``train_lm`` trains one transformer per seed with ``FairAdamW`` (row options on the token embedding and
the unembedding, rows = tokens), ``lm_outcome`` measures aggregate loss, tail-bucket loss (the rarest
log3 bucket) and expected calibration error on the training and held-out splits, and ``pareto_rows``
runs plain AdamW over a λ grid, picks the λ with the lowest held-out aggregate loss and runs every
variant there. ``python -m imbalance.optim.lm`` prints the table.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..theory.fair_decay import row_decay_scale
from .adamw import FairAdamW

__all__ = ["LMOutcome", "lm_outcome", "lm_variants", "pareto_rows", "pareto_table", "train_lm"]

ROW_PARAMS = ("tok_emb", "unembed")


def lm_variants(pi, tokens_per_batch) -> dict:
    """FairAdamW row options per variant name (applied to the embedding and unembedding rows)."""
    scale = row_decay_scale(pi, batch_size=tokens_per_batch)
    return {"AdamW": {}, "row-scaled ρ": {"row_decay_scale": scale}, "lazy decay": {"lazy": "decay"},
            "lazy moments": {"lazy": "moments"}, "coupled": {"coupled": True}}


def _groups(per_seed, model, lam, variant):
    groups = []
    for params in per_seed:
        rows = [params[k] for k in ROW_PARAMS if k in params and k in model.decayed]
        other = [p for k, p in params.items() if k in model.decayed and k not in ROW_PARAMS]
        free = [p for k, p in params.items() if k not in model.decayed]
        groups += [{"params": rows, "weight_decay": lam, **variant}, {"params": other, "weight_decay": lam},
                   {"params": free, "weight_decay": 0.0}]
    return groups


def train_lm(task, model, lam, *, steps, batch_size, lr, seeds=(0, 1, 2), variant=None, dtype=torch.float32) -> dict:
    """Train one ``model`` (a ``Transformer``) per seed on ``task`` (a sequence task); returns the final
    parameters stacked over seeds, {name: (S, ...)}, detached."""
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    init = model.init(task, gens, dtype)
    per_seed = [{k: v[i].clone().requires_grad_() for k, v in init.items()} for i in range(len(gens))]
    opt = FairAdamW(_groups(per_seed, model, lam, dict(variant or {})), lr=lr)
    for _ in range(int(steps)):
        xy = [task.sample(g, batch_size) for g in gens]
        x = torch.stack([a for a, _ in xy])                                   # (S, B, T)
        y = torch.stack([b for _, b in xy])                                   # (S, B, T)
        params = {k: torch.stack([p[k] for p in per_seed]) for k in init}     # (S, ...)
        logits = model.logits(params, x, task)                                # (S, B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 2), y.reshape(-1), reduction="sum") / (x.shape[1] * x.shape[2])
        opt.zero_grad()
        loss.backward()  # the sum over seeds: each seed's parameters get its own mean-loss gradient
        opt.step()
    return {k: torch.stack([p[k].detach() for p in per_seed]) for k in init}


@dataclass(frozen=True)
class LMOutcome:
    """Per seed (S,): aggregate Σ π_v ℓ_v, tail-bucket loss and ECE, on the train and held-out splits."""

    name: str
    lam: float
    train_aggregate: np.ndarray
    heldout_aggregate: np.ndarray
    train_tail: np.ndarray
    heldout_tail: np.ndarray
    train_ece: np.ndarray
    heldout_ece: np.ndarray


def lm_outcome(name, lam, task, model, params) -> LMOutcome:
    from ..sim.evaluate import evaluate, sequence_calibration

    S = next(iter(params.values())).shape[0]
    ev = evaluate(model, params, task, 1, S)
    pi = task.token_probs
    out = {}
    for split, data in (("train", task.train[: task.n_heldout]), ("heldout", task.heldout)):
        lpt = ev[split].numpy()[0]                                            # (S, V)
        seen = pi * ~np.isnan(lpt).all(0)
        out[f"{split}_aggregate"] = metrics.aggregate_loss(lpt, seen)
        out[f"{split}_tail"] = metrics.bucket_loss(lpt, seen)[1][:, -1]
        out[f"{split}_ece"] = np.asarray(sequence_calibration(model, params, task, data)["ece"]).reshape(S)
    return LMOutcome(name=name, lam=float(lam), **out)


def pareto_rows(task, model, *, steps, batch_size, lr, lams=(0.0, 0.1, 0.3, 1.0), seeds=(0, 1, 2)) -> list:
    """AdamW at every λ, then every variant at the λ > 0 with the lowest held-out aggregate loss."""
    kw = dict(steps=steps, batch_size=batch_size, lr=lr, seeds=seeds)
    rows = [lm_outcome("AdamW", lam, task, model, train_lm(task, model, lam, **kw)) for lam in lams]
    decayed = [r for r in rows if r.lam > 0]
    best = min(decayed, key=lambda r: r.heldout_aggregate.mean()).lam
    for name, variant in lm_variants(task.token_probs, batch_size * task.seq_len).items():
        if name != "AdamW":
            rows.append(lm_outcome(name, best, task, model, train_lm(task, model, best, variant=variant, **kw)))
    return rows


def pareto_table(rows) -> str:
    """Markdown: seed mean ± 95 % CI half-width of every field."""
    fields = ("train_aggregate", "heldout_aggregate", "train_tail", "heldout_tail", "train_ece", "heldout_ece")
    lines = ["| optimizer | λ | " + " | ".join(f.replace("_", " ") for f in fields) + " |",
             "|" + "---|" * (len(fields) + 2)]
    for r in rows:
        cells = []
        for f in fields:
            v = getattr(r, f)
            mean, half = metrics.mean_ci(v[None], axis=1) if v.size > 1 else (v, np.full(1, np.nan))
            cells.append(f"{float(mean[0]):.3f} ± {float(half[0]):.3f}")
        lines.append(f"| {r.name} | {r.lam:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    from ..sim.paradox import small_lm

    parser = argparse.ArgumentParser(description="Pareto table of FairAdamW variants on the small LM (regime a)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args(argv)
    task, model, steps = small_lm(fast=args.fast)
    t0 = time.perf_counter()
    rows = pareto_rows(task, model, steps=args.steps or steps, batch_size=16, lr=1e-2)
    print(pareto_table(rows))
    print(f"({time.perf_counter() - t0:.0f} s; V = {task.vocab_size}, {args.steps or steps} steps, batch 16 × "
          f"{task.seq_len} tokens, lr 1e-2, seeds 0-2)")


if __name__ == "__main__":
    main()
