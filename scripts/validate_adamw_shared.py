"""AdamW equilibrium of the factored bigram LM (T10) against batched AdamW training.

Trains the factored bigram (E, W both decayed, untied, width d) with AdamW for every
(B, λ, seed) and predicts the per-token loss of each without training, from that seed's
initialisation; prints the per-bucket (powers of 3) table: simulation mean ± 95 % CI over seeds
(iterate average over the last quarter of the run), the AdamW prediction, the L2 (T7) optimum and
an SGD simulation, with relative errors, and the rare-minus-frequent gap. The experiment code is
``imbalance.reproduce.adamw_shared``; this script chooses the task and prints.

Run: ``python scripts/validate_adamw_shared.py [--text [PATH]] [--ufm] [--batch-question]
[--lm] [--tied] [--steps N] [--lr LR] [--lams ...] [--batch-sizes ...] [--beta2 B2] [--json OUT]``
(default task: 16-token Zipf(1.1) stochastic bigram, predictability 0.7; ``--text``: word tokens of
PATH, or of the shipped corpus without PATH, top V − 1 types + ``<unk>``; ``--ufm``: 16 Zipf(1.1)
classes, one free feature per class; ``--lm``: the report's small transformer on the shipped corpus,
its measured per-bucket damage next to the factored AdamW prediction; ``--tied``: tied embeddings,
one matrix decayed once, against the tied T10 equilibrium and the tied L2 optimum).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from imbalance.corpus import tokenize_words
from imbalance.lm.corpus import shipped_corpus_text
from imbalance.reproduce.adamw_shared import (
    batch_gap_rows,
    damage_markdown,
    damage_summary,
    lm_damage_rows,
    stays_at_equilibrium,
    text_task,
    validation_rows,
)
from imbalance.sim import BigramTask, sweep
from imbalance.sim.paradox import small_lm
from imbalance.theory.adamw_shared import ufm_counts
from imbalance.zipf import zipf_pmf


def print_table(rows):
    print("| B | λ | bucket | min Bπ/(1−β₂) | sim (±95% CI) | AdamW theory | err | L2 (T7) | err | SGD sim |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m, a, l2, sg = r["sim"], r["adamw"], r["l2"], r.get("sgd", np.nan)
        print(f"| {r['B']} | {r['lam']:g} | {r['bucket']} | {r['min_window']:.3g} | {m:.4f} ± {r['sim_ci']:.4f} | "
              f"{a:.4f} | {100 * (a / m - 1):+.1f} % | {l2:.4f} | {100 * (l2 / m - 1):+.1f} % | {sg:.4f} |")
    print("\n| B | λ | gap sim AdamW (±CI) | gap AdamW theory | gap L2 | gap sim SGD (±CI) | max residual "
          "(theory) | max|F| at the runs' averaged parameters |")
    print("|---|---|---|---|---|---|---|---|")
    for (B, lam) in dict.fromkeys((r["B"], r["lam"]) for r in rows):
        rs = [r for r in rows if r["B"] == B and r["lam"] == lam]
        lo, hi = rs[0], rs[-1]
        g = {k: hi.get(k, np.nan) - lo.get(k, np.nan) for k in ("sim", "adamw", "l2", "sgd")}
        ci_sgd = np.hypot(hi.get("sgd_ci", np.nan), lo.get("sgd_ci", np.nan))
        print(f"| {B} | {lam:g} | {g['sim']:.4f} ± {np.hypot(hi['sim_ci'], lo['sim_ci']):.4f} | {g['adamw']:.4f} | "
              f"{g['l2']:.4f} | {g['sgd']:.4f} ± {ci_sgd:.4f} | {hi['residual']:.1e} | {hi['sim_residual']:.2g} |")


def print_gap(rows):
    print("| optimizer | λ | B | steps | tail B·π | gap sim (±95% CI) | gap theory | head sim | tail sim | residual |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['optimizer']} | {r['lam']:g} | {r['B']} | {r['steps']} | {r['tail_B_pi']:.3g} | "
              f"{r['gap_sim']:.4f} ± {r['gap_ci']:.4f} | {r['gap_theory']:.4f} | {r['head_sim']:.4f} | "
              f"{r['tail_sim']:.4f} | {r['residual']:.1e} |")


def lm_comparison(vocab, lams, seeds, steps):
    """The small transformer of the report on the shipped corpus (word tokens): its measured training
    per-bucket damage (loss at λ minus loss at λ = 0) next to the factored AdamW theory's prediction
    (B = tokens per batch, width = the transformer's width; no fitted parameter)."""
    ids, voc = tokenize_words(shipped_corpus_text(), vocab)
    task, model, _ = small_lm(False, tokens=(ids, len(voc)))
    B = 16
    res = sweep(task, [0.0, *lams], model=model, optimizer="adamw", steps=steps, batch_size=B, lr=1e-2,
                seeds=seeds, dtype=torch.float32, progress=False, eval_every=steps)
    rows = lm_damage_rows(res, task, model, B * task.seq_len)
    print(f"transformer ({model.n_layer} layer, width {model.d_model}, {steps} steps, B = {B} × {task.seq_len} "
          f"tokens) vs factored AdamW theory, V = {len(voc)}\n")
    print(damage_markdown(rows) + "\n\n" + damage_summary(rows))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32, help="vocabulary size with --text")
    ap.add_argument("--lams", type=float, nargs="+", default=[0.2, 0.4, 0.8])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--sgd-lam", type=float, default=None, help="L2 decay of the SGD runs of --batch-question")
    ap.add_argument("--tokens", type=int, default=131_072, help="token budget of --batch-question")
    ap.add_argument("--no-sgd", action="store_true", help="skip the SGD runs beside the AdamW ones")
    ap.add_argument("--json", default=None)
    ap.add_argument("--text", nargs="?", const="", default=None, help="real text (no PATH: the shipped corpus)")
    ap.add_argument("--ufm", action="store_true", help="the UFM (one feature per class, Zipf(1.1) classes)")
    ap.add_argument("--batch-question", action="store_true", help="gap against B at a fixed token budget")
    ap.add_argument("--start-at-equilibrium", action="store_true",
                    help="train from the predicted equilibrium (first λ, first B): does AdamW stay there?")
    ap.add_argument("--lm", action="store_true", help="small transformer's damage vs the factored AdamW theory")
    ap.add_argument("--tied", action="store_true", help="tied embeddings (W = E, one matrix, one decay)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.lm:
        rows = lm_comparison(a.vocab, a.lams, tuple(range(a.seeds)), a.steps)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(dict(args=vars(a), rows=rows), f, indent=1)
        return
    if a.text is not None:
        task, source = text_task(a.vocab, a.text or None)
    elif a.ufm:
        task, source = BigramTask(ufm_counts(zipf_pmf(16, 1.1))), "UFM, 16 Zipf(1.1) classes"
    else:
        task, source = BigramTask.stochastic_zipf(16, 1.1, 0.7), "16-token Zipf(1.1) stochastic bigram"
    print(f"task: {source}; width {a.width}, lr {a.lr}, {a.seeds} seeds\n")
    seeds = tuple(range(a.seeds))
    if a.start_at_equilibrium:
        steps, pred, curve, resid = stays_at_equilibrium(task, a.lams[0], batch_size=a.batch_sizes[0], width=a.width,
                                                         seeds=seeds, steps=a.steps, lr=a.lr)
        print(f"λ = {a.lams[0]}, B = {a.batch_sizes[0]}: max|F| at the averaged parameters per seed", resid)
        print("| step | " + " | ".join(f"bucket {j}" for j in range(pred.size)) + " |")
        print("| predicted | " + " | ".join(f"{v:.3e}" for v in pred) + " |")
        for t, c in zip(steps, curve):
            print(f"| {t} | " + " | ".join(f"{v:.3e}" for v in c) + " |")
        return
    if a.batch_question:
        rows = batch_gap_rows(task, lam=a.lams[0], sgd_lam=a.sgd_lam, batch_sizes=a.batch_sizes, tokens=a.tokens,
                              width=a.width, seeds=seeds, lr=a.lr)
        print_gap(rows)
    else:
        rows = validation_rows(task, width=a.width, lams=a.lams, batch_sizes=a.batch_sizes, seeds=seeds,
                               steps=a.steps, lr=a.lr, betas=(0.9, a.beta2), sgd=not a.no_sgd, tied=a.tied)
        print_table(rows)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(task=source, args=vars(a), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
