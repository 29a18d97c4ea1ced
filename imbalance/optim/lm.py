"""FairAdamW variants on the small LM of the paradox (regime (a): the synthetic copy task).

``train_lm`` trains one transformer per seed with ``FairAdamW`` (row options on the token embedding and
the unembedding, rows = tokens), ``lm_outcome`` measures aggregate loss, tail-bucket loss (the rarest
log3 bucket) and expected calibration error on the training and held-out splits, and ``pareto_rows``
runs plain AdamW over a λ grid, picks the λ with the lowest held-out aggregate loss and runs every
variant there, with the two existing mitigations at the same λ: 1/π loss reweighting (token-balanced
CE, trained) and post-hoc logit adjustment z − τ log π (Menon et al. 2021, arXiv 2007.07314; the
trained AdamW models, adjusted at evaluation). ``python -m imbalance.optim.lm`` prints the tables and
can write the per-seed rows (``--json``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..theory.fair_decay import row_decay_scale
from .adamw import FairAdamW
from .pareto import LMOutcome, pareto_table, rows_from_json, rows_to_json, target_table

__all__ = ["LMOutcome", "balanced_weights", "lm_outcome", "lm_variants", "pareto_rows", "pareto_table",
           "predicted_verdicts", "train_lm", "variant_rows"]

ROW_PARAMS = ("tok_emb", "unembed")


def lm_variants(pi, tokens_per_batch) -> dict:
    """FairAdamW row options per variant name (applied to the embedding and unembedding rows)."""
    scale = row_decay_scale(pi, batch_size=tokens_per_batch)
    return {"AdamW": {}, "row-scaled ρ": {"row_decay_scale": scale}, "lazy decay": {"lazy": "decay"},
            "lazy moments": {"lazy": "moments"}, "coupled": {"coupled": True}}


def predicted_verdicts(pi, tokens_per_batch, lam) -> dict:
    """T6b's verdict (``fairness_verdict``: the deterministic-bigram law at these frequencies, B and λ) of the
    row-local variants; the shared second moment couples all rows and is left out (its solver is slow at
    hundreds of rows)."""
    from ..theory.fair_decay import fairness_verdict

    out = {}
    for name, v in lm_variants(pi, tokens_per_batch).items():
        if name != "coupled":
            out[name] = fairness_verdict(pi, lam, batch_size=tokens_per_batch,
                                         decay_scale=v.get("row_decay_scale"), lazy=v.get("lazy", "none"))
    return out


def balanced_weights(pi) -> np.ndarray:
    """Per-token loss weights 1/(n π_v) of the token-balanced CE (n = types with π_v > 0; 0 for unseen
    types): the reweighting mitigation of ``imbalance.sim.sweep``."""
    pi = np.asarray(pi, dtype=np.float64)
    return np.where(pi > 0, 1.0 / (np.count_nonzero(pi) * np.where(pi > 0, pi, 1.0)), 0.0)


def _groups(per_seed, model, lam, variant):
    groups = []
    for params in per_seed:
        rows = [params[k] for k in ROW_PARAMS if k in params and k in model.decayed]
        other = [p for k, p in params.items() if k in model.decayed and k not in ROW_PARAMS]
        free = [p for k, p in params.items() if k not in model.decayed]
        groups += [{"params": rows, "weight_decay": lam, **variant}, {"params": other, "weight_decay": lam},
                   {"params": free, "weight_decay": 0.0}]
    return groups


def train_lm(task, model, lam, *, steps, batch_size, lr, seeds=(0, 1, 2), variant=None, reweight=False,
             dtype=torch.float32) -> dict:
    """Train one ``model`` (a ``Transformer``) per seed on ``task`` (a sequence task); returns the final
    parameters stacked over seeds, {name: (S, ...)}, detached. A seed fixes the initialisation and the
    batches. ``reweight``: the loss of target token v is weighted by ``balanced_weights(task.token_probs)[v]``."""
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    init = model.init(task, gens, dtype)
    per_seed = [{k: v[i].clone().requires_grad_() for k, v in init.items()} for i in range(len(gens))]
    opt = FairAdamW(_groups(per_seed, model, lam, dict(variant or {})), lr=lr)
    weights = torch.as_tensor(balanced_weights(task.token_probs), dtype=dtype) if reweight else None  # (V,)
    for _ in range(int(steps)):
        xy = [task.sample(g, batch_size) for g in gens]
        x = torch.stack([a for a, _ in xy])                                   # (S, B, T)
        y = torch.stack([b for _, b in xy])                                   # (S, B, T)
        params = {k: torch.stack([p[k] for p in per_seed]) for k in init}     # (S, ...)
        logits = model.logits(params, x, task)                                # (S, B, T, V)
        ce = F.cross_entropy(logits.flatten(0, 2), y.reshape(-1), reduction="none")  # (S·B·T,)
        if weights is not None:
            ce = ce * weights[y.reshape(-1)]
        loss = ce.sum() / (x.shape[1] * x.shape[2])
        opt.zero_grad()
        loss.backward()  # the sum over seeds: each seed's parameters get its own mean-loss gradient
        opt.step()
    return {k: torch.stack([p[k].detach() for p in per_seed]) for k in init}


def lm_outcome(name, lam, task, model, params, logit_bias=None) -> LMOutcome:
    """Aggregate, tail-bucket (rarest log3 bucket) loss and ECE of the S trained models on the training
    split (its first ``n_heldout`` sequences) and on the held-out split; ``logit_bias`` (V,) is added to
    the logits first (post-hoc adjustment)."""
    from ..sim.evaluate import evaluate, sequence_calibration

    S = next(iter(params.values())).shape[0]
    ev = evaluate(model, params, task, 1, S, logit_bias=logit_bias)
    pi = task.token_probs
    out = {}
    for split, data in (("train", task.train[: task.n_heldout]), ("heldout", task.heldout)):
        lpt = ev[split].numpy()[0]                                            # (S, V)
        seen = pi * ~np.isnan(lpt).all(0)
        out[f"{split}_aggregate"] = metrics.aggregate_loss(lpt, seen)
        out[f"{split}_tail"] = metrics.bucket_loss(lpt, seen)[1][:, -1]
        cal = sequence_calibration(model, params, task, data, logit_bias=logit_bias)
        out[f"{split}_ece"] = np.asarray(cal["ece"]).reshape(S)
    return LMOutcome(name=name, lam=float(lam), **out)


def variant_rows(task, model, lam, *, steps, batch_size, lr, seeds=(0, 1, 2), tau=1.0, adamw_params=None,
                 progress=None) -> list:
    """At one λ: every FairAdamW variant, 1/π reweighting and the post-hoc logit adjustment (τ) of the
    AdamW models ``adamw_params`` (trained here when None)."""
    from ..sim.paradox import posthoc_bias

    kw = dict(steps=steps, batch_size=batch_size, lr=lr, seeds=seeds)
    say = progress or (lambda msg: None)
    rows = []
    for name, variant in lm_variants(task.token_probs, batch_size * task.seq_len).items():
        if name != "AdamW":
            say(f"{name} λ={lam:g}")
            rows.append(lm_outcome(name, lam, task, model, train_lm(task, model, lam, variant=variant, **kw)))
    say(f"1/π reweighting λ={lam:g}")
    rows.append(lm_outcome("1/π reweighting", lam, task, model, train_lm(task, model, lam, reweight=True, **kw)))
    if adamw_params is None:
        adamw_params = train_lm(task, model, lam, **kw)
    rows.append(lm_outcome(f"post-hoc τ={tau:g}", lam, task, model, adamw_params,
                           logit_bias=posthoc_bias(task.token_probs, tau)))
    return rows


def pareto_rows(task, model, *, steps, batch_size, lr, lams=(0.0, 0.1, 0.3, 1.0), seeds=(0, 1, 2), tau=1.0,
                progress=None) -> list:
    """AdamW at every λ; then ``variant_rows`` at the λ > 0 with the lowest held-out aggregate loss."""
    kw = dict(steps=steps, batch_size=batch_size, lr=lr, seeds=seeds)
    say = progress or (lambda msg: None)
    rows, params = [], {}
    for lam in lams:
        say(f"AdamW λ={lam:g}")
        params[lam] = train_lm(task, model, lam, **kw)
        rows.append(lm_outcome("AdamW", lam, task, model, params[lam]))
    best = min((r for r in rows if r.lam > 0), key=lambda r: r.heldout_aggregate.mean()).lam
    return rows + variant_rows(task, model, best, tau=tau, adamw_params=params[best], progress=progress, **kw)


def main(argv=None):
    from ..sim.paradox import small_lm

    parser = argparse.ArgumentParser(description="Pareto table of FairAdamW variants on the small LM (regime a)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--json", help="write the per-seed rows to this JSON file")
    parser.add_argument("--add-to", help="a rows file (--json of an earlier run, same settings): train only the "
                        "variants and mitigations at --variants-at and add them to it")
    parser.add_argument("--variants-at", type=float, default=None)
    args = parser.parse_args(argv)
    task, model, steps = small_lm(fast=args.fast)
    steps = args.steps or steps
    t0 = time.perf_counter()
    kw = dict(steps=steps, batch_size=16, lr=1e-2, seeds=tuple(range(args.seeds)),
              progress=lambda m: print(f"[{time.perf_counter() - t0:.0f} s] {m}", flush=True))
    if args.add_to:
        rows, _ = rows_from_json(args.add_to)
        rows += variant_rows(task, model, args.variants_at, **kw)
    else:
        rows = pareto_rows(task, model, **kw)
    settings = (f"copy task V = {task.vocab_size}, one-layer width-{model.d_model} transformer, {steps} steps, "
                f"batch 16 × {task.seq_len} tokens, lr 1e-2, seeds 0-{args.seeds - 1}")
    print(pareto_table(rows), target_table(rows), sep="\n\n")
    print(f"({time.perf_counter() - t0:.0f} s; {settings})")
    if args.json:
        rows_to_json(rows, args.json, regime="a", settings=settings)


if __name__ == "__main__":
    main()
