"""AdamW equilibrium of the factored bigram LM (T10) against batched AdamW training.

For each batch size B, trains the factored bigram (E, W both decayed, untied, width d) with
AdamW on a Zipfian stochastic bigram for every (λ, seed) in one ``imbalance.sim.sweep``, and
predicts the per-token loss of every (λ, seed) without training, by
``factored_bigram_adamw_equilibrium`` started from that seed's initialisation. Prints the
per-bucket (powers of 3) table: simulation mean ± 95 % CI over seeds (iterate average over the
last quarter of the run), the AdamW prediction (mean over the same seeds' inits) and the L2 (T7)
optimum (the convex T7 optimum; it is the L2 optimum of the factored model only when the width
d ≥ V, so at smaller width it is a reference, not a prediction), with relative errors; also the
rare-minus-frequent gap for both optimisers.

Run: ``python scripts/validate_adamw_shared.py [--steps N] [--lr LR] [--json OUT] [--ufm]``
(``--ufm``: the UFM, i.e. the factored model on ``ufm_counts`` of 16 Zipf(1.1) classes).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from imbalance import metrics
from imbalance.sim import BigramTask, FactoredBigram, sweep
from imbalance.theory import factored_bigram_equilibrium
from imbalance.theory.adamw_shared import factored_bigram_adamw_equilibrium, ufm_counts
from imbalance.zipf import zipf_pmf


def seed_init(model, task, seed):
    """The (W0 (V, d), E0 (C, d)) that ``sweep`` draws for ``seed`` (same generator, same order)."""
    p = model.init(task, [torch.Generator().manual_seed(seed)], torch.float64)
    return p["W"][0].numpy(), p["E"][0].numpy()


def run(V=16, width=8, s=1.1, alpha=0.7, lams=(0.1, 0.2, 0.4), batch_sizes=(8, 64), seeds=(0, 1, 2),
        steps=20_000, lr=1e-2, init_scale=0.1, ufm=False):
    task = BigramTask(ufm_counts(zipf_pmf(V, s))) if ufm else BigramTask.stochastic_zipf(V, s, alpha)
    model = FactoredBigram(width=width, init_scale=init_scale)
    pi = task.token_probs
    l2 = factored_bigram_equilibrium(task.counts, np.array(lams), np.array(lams)).loss_per_token  # (L, V)
    rows = []
    for B in batch_sizes:
        t0 = time.time()
        res = sweep(task, list(lams), model=model, optimizer="adamw", steps=steps, batch_size=B, lr=lr,
                    seeds=seeds, average_last=steps // 4, progress=False, eval_every=steps)
        t_sim = time.time() - t0
        sim = res.loss_per_token_avg  # (L, S, V)
        t0 = time.time()
        eqs = [factored_bigram_adamw_equilibrium(task.counts, np.array(lams), init=seed_init(model, task, sd),
                                                 batch_size=B) for sd in seeds]
        pred = np.stack([e.loss_per_token for e in eqs], 1)  # (L, S, V)
        resid = np.stack([e.residual for e in eqs], 1)  # (L, S)
        t_theory = time.time() - t0
        sgd = sweep(task, list(lams), model=model, optimizer="sgd", steps=steps, batch_size=B, lr=lr * 20,
                    seeds=seeds, average_last=steps // 4, progress=False, eval_every=steps).loss_per_token_avg
        for i, lam in enumerate(lams):
            ids, bs = metrics.bucket_loss(sim[i], pi)  # (S, n_b)
            _, bp = metrics.bucket_loss(pred[i], pi)
            _, b2 = metrics.bucket_loss(l2[i], pi)
            _, bsgd = metrics.bucket_loss(sgd[i], pi)
            m, half = metrics.mean_ci(bs, axis=0)
            msgd, hsgd = metrics.mean_ci(bsgd, axis=0)
            rows.append(dict(B=B, lam=lam, buckets=ids.tolist(), sim=m.tolist(), ci=half.tolist(),
                             adamw=bp.mean(0).tolist(), adamw_seed_sd=bp.std(0, ddof=1).tolist(), l2=b2.tolist(),
                             sgd=msgd.tolist(), sgd_ci=hsgd.tolist(),
                             residual=resid[i].max(), window=(B * pi / 0.001).min(), t_sim=t_sim, t_theory=t_theory))
    return rows


def batch_size_gap(V=16, width=8, s=1.1, alpha=0.7, lam=0.2, batch_sizes=(4, 16, 64, 256), seed=0,
                   init_scale=0.1):
    """Theory only: rare-minus-frequent bucket gap of the AdamW equilibrium against B at fixed λ,
    next to the L2 (T7) gap, which does not depend on B."""
    task = BigramTask.stochastic_zipf(V, s, alpha)
    model = FactoredBigram(width=width, init_scale=init_scale)
    init = seed_init(model, task, seed)
    pi = task.token_probs
    l2 = factored_bigram_equilibrium(task.counts, lam, lam).loss_per_token
    out = []
    for B in batch_sizes:
        eq = factored_bigram_adamw_equilibrium(task.counts, lam, init=init, batch_size=B)
        _, b = metrics.bucket_loss(eq.loss_per_token, pi)
        out.append(dict(B=B, gap=float(b[-1] - b[0]), residual=eq.residual, aggregate=eq.aggregate_loss))
    _, b2 = metrics.bucket_loss(l2, pi)
    return out, float(b2[-1] - b2[0])


def print_table(rows):
    print("| B | λ | bucket | sim (±95% CI) | AdamW theory | err | L2 (T7) | err | SGD sim |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for b, m, h, a, l2, sg in zip(r["buckets"], r["sim"], r["ci"], r["adamw"], r["l2"], r["sgd"]):
            print(f"| {r['B']} | {r['lam']:g} | {b} | {m:.4f} ± {h:.4f} | {a:.4f} | {100 * (a / m - 1):+.1f} % | "
                  f"{l2:.4f} | {100 * (l2 / m - 1):+.1f} % | {sg:.4f} |")
    print()
    print("| B | λ | gap sim AdamW (±CI) | gap AdamW theory | gap L2 | gap sim SGD (±CI) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        gs, ga, gl, gg = (r[k][-1] - r[k][0] for k in ("sim", "adamw", "l2", "sgd"))
        ci = np.hypot(r["ci"][-1], r["ci"][0])
        cg = np.hypot(r["sgd_ci"][-1], r["sgd_ci"][0])
        print(f"| {r['B']} | {r['lam']:g} | {gs:.4f} ± {ci:.4f} | {ga:.4f} | {gl:.4f} | {gg:.4f} ± {cg:.4f} |")
    for r in rows:
        print(f"B={r['B']} λ={r['lam']}: max residual {r['residual']:.1e}, min Bπ/(1−β₂) {r['window']:.0f}; "
              f"simulation {r['t_sim']:.0f} s, theory {r['t_theory']:.0f} s (all λ, all seeds)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--json", default=None)
    ap.add_argument("--batch-question", action="store_true", help="only the theory gap against B")
    ap.add_argument("--ufm", action="store_true", help="the UFM (one feature per class, Zipf(1.1) classes)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.batch_question:
        out, gap_l2 = batch_size_gap(width=a.width)
        print("| B | AdamW gap (theory) | residual | aggregate loss |\n|---|---|---|---|")
        for o in out:
            print(f"| {o['B']} | {o['gap']:.4f} | {o['residual']:.1e} | {o['aggregate']:.4f} |")
        print(f"L2 (T7, any B) gap: {gap_l2:.4f}")
        return
    rows = run(steps=a.steps, lr=a.lr, width=a.width, ufm=a.ufm)
    print_table(rows)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
