"""Predicted vs measured equilibrium margins of every FairAdamW variant (the T6b table).

``python -m imbalance.optim.equilibrium_table [--write proofs/T6b_fair_optimizers.md]`` runs the long
check (deterministic Zipf bigram, default β₂ = 0.999, small lr, long run, several replicas), prints a
Markdown table and, with ``--write``, replaces the table between the markers in that file. The verdict
column is computed from the theory alone, before any training.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from ..theory.fair_decay import fair_margin_law, fairness_verdict, row_decay_scale
from .simulate import loss_margins, train_bigram

__all__ = ["VARIANTS", "EquilibriumRow", "equilibrium_rows", "markdown_table", "verdict_table"]

VARIANTS = ("AdamW", "row-scaled ρ", "lazy decay", "lazy moments (LazyAdam)", "coupled (shared v)",
            "lazy decay + ρ-scaled")
START, END = "<!-- T6b table: start -->", "<!-- T6b table: end -->"
GRID_START, GRID_END = "<!-- T6b verdicts: start -->", "<!-- T6b verdicts: end -->"


@dataclass(frozen=True)
class EquilibriumRow:
    variant: str
    verdict: str
    predicted: np.ndarray      # (K,)
    measured: np.ndarray       # (K,) mean over replicas
    sem: np.ndarray            # (K,)

    @property
    def max_rel_error(self) -> float:
        return float(np.max(np.abs(self.measured - self.predicted) / self.predicted))


def _options(name, P, B):
    scale = row_decay_scale(P, batch_size=B)
    return {"AdamW": {}, "row-scaled ρ": {"row_decay_scale": scale}, "lazy decay": {"lazy": "decay"},
            "lazy moments (LazyAdam)": {"lazy": "moments"}, "coupled (shared v)": {"coupled": True},
            "lazy decay + ρ-scaled": {"lazy": "decay", "row_decay_scale": scale}}[name]


def equilibrium_rows(*, K=16, s=1.0, batch_size=16, lam=1.0, lr=3e-3, steps=24000, average_last=6000, replicas=8,
                     betas=(0.9, 0.999), eps=1e-8, seed=0, variants=VARIANTS) -> list[EquilibriumRow]:
    """Train every variant on the deterministic Zipf(s) bigram with K rows and compare with ``fair_margin_law``."""
    from ..sim import BigramTask

    task = BigramTask.deterministic_zipf(K, s)
    P = task.context_probs
    opts = [_options(v, P, batch_size) for v in variants]
    theory = [dict(decay_scale=o.get("row_decay_scale"), lazy=o.get("lazy", "none"), coupled=o.get("coupled", False))
              for o in opts]
    verdicts = [fairness_verdict(P, lam, batch_size=batch_size, eps=eps, **t) for t in theory]  # before training
    run = train_bigram(task, lam, batch_size=batch_size, lr=lr, steps=steps, average_last=average_last, variants=opts,
                       replicas=replicas, seed=seed, betas=betas, eps=eps)
    sims = loss_margins(run.weights_avg, task.r)                                  # (n_var, R, K)
    rows = []
    for name, verdict, t, sim in zip(variants, verdicts, theory, sims):
        pred = fair_margin_law(P, lam, batch_size=batch_size, eps=eps, **t).margins
        rows.append(EquilibriumRow(name, verdict, pred, sim.mean(0), sim.std(0, ddof=1) / np.sqrt(sim.shape[0])))
    return rows


def markdown_table(rows, settings: str) -> str:
    """One line per variant: verdict, predicted and measured margins of the most frequent, middle and
    rarest rows, the largest relative error over all rows and the largest standard error."""
    K = rows[0].predicted.size
    picks = (0, K // 2, K - 1)
    head = ("| variant | verdict (theory, before training) | "
            + " | ".join(f"row {i + 1}: predicted / measured" for i in picks)
            + " | max rel. error (all rows) | max SE / margin |")
    lines = [settings, "", head, "|" + "---|" * (len(picks) + 4)]
    for r in rows:
        cells = " | ".join(f"{r.predicted[i]:.3f} / {r.measured[i]:.3f}" for i in picks)
        lines.append(f"| {r.variant} | {r.verdict} | {cells} | {100 * r.max_rel_error:.2f} % | "
                     f"{100 * np.max(r.sem / r.predicted):.2f} % |")
    return "\n".join(lines)


def verdict_table(*, K=16, s=1.0, batch_sizes=(4, 16, 64, 1024), lams=(2.0, 0.5, 0.05), eps=1e-8) -> str:
    """Theory only: ``fairness_verdict`` of every variant over a grid of (B, λ) (Zipf(s) rows, K of them)."""
    from ..zipf import zipf_pmf

    P = zipf_pmf(K, s)
    lines = ["| B | λ | " + " | ".join(VARIANTS) + " |", "|" + "---|" * (len(VARIANTS) + 2)]
    for B in batch_sizes:
        for lam in lams:
            cells = []
            for name in VARIANTS:
                o = _options(name, P, B)
                try:
                    cells.append(fairness_verdict(P, lam, batch_size=B, eps=eps, decay_scale=o.get("row_decay_scale"),
                                                  lazy=o.get("lazy", "none"), coupled=o.get("coupled", False)))
                except RuntimeError:
                    cells.append("(no solution found)")
            lines.append(f"| {B} | {lam} | " + " | ".join(cells) + " |")
    return (f"Verdicts from the theory (K = {K}, Zipf s = {s}, ε = {eps}; Bπ of the rarest row = B·{P[-1]:.4f}).\n\n"
            + "\n".join(lines))


def _replace(text, start, end, table, path):
    if start not in text or end not in text:
        raise ValueError(f"{path} has no markers {start!r} … {end!r}")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return before + start + "\n" + table + "\n" + end + after


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", help="Markdown file whose table between the T6b markers is replaced")
    parser.add_argument("--steps", type=int, default=24000)
    args = parser.parse_args(argv)
    kw = dict(K=16, s=1.0, batch_size=16, lam=1.0, lr=3e-3, steps=args.steps, average_last=args.steps // 4, replicas=8)
    t0 = time.perf_counter()
    rows = equilibrium_rows(**kw)
    settings = (f"Deterministic Zipf bigram, K = {kw['K']}, s = {kw['s']}, B = {kw['batch_size']} (Bπ from "
                f"{kw['batch_size'] / sum(1 / np.arange(1, kw['K'] + 1)):.2f} down to "
                f"{kw['batch_size'] / kw['K'] / sum(1 / np.arange(1, kw['K'] + 1)):.2f}), λ = {kw['lam']}, "
                f"lr = {kw['lr']}, β = (0.9, 0.999), ε = 1e-8, {kw['steps']} steps, iterate average over the "
                f"last {kw['average_last']}, {kw['replicas']} replicas; margins are loss-equivalent "
                f"(ℓ = log(1 + (K−1)e^(−m))). Generated by `python -m imbalance.optim.equilibrium_table`.")
    table = markdown_table(rows, settings)
    grid = verdict_table()
    print(table, "\n", grid, sep="\n")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.write:
        with open(args.write, encoding="utf-8") as f:
            text = f.read()
        text = _replace(text, START, END, table, args.write)
        text = _replace(text, GRID_START, GRID_END, grid, args.write)
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
