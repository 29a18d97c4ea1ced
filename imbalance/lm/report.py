"""The sweep's report: report.md (per-bucket loss against λ, the paper's Figure 1 shape;
aggregate against token-balanced loss, its Table 1 shape; train and held-out, seed means with
95 % confidence intervals), results.jsonl (tidy rows) and figures (PNG and SVG); with them the
predictions of the solvable models for the same token stream (:mod:`imbalance.lm.predictions`):
T3's ρ(B·π) per bucket and T7/T8's factored bigram optimum and collapse frequency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..plot import bucket_loss_vs_lambda, use_style
from ..zipf import frequency_buckets
from .model import format_decay_table
from .plots import aggregate_vs_balanced_by_lambda, bucket_learning_curves
from .predictions import FactoredLines, t3_lines
from .sweep import LMSweepResult

__all__ = ["tidy_rows", "write_sweep_report", "below_one_per_batch"]


def below_one_per_batch(pi, tokens_per_batch: int) -> float:
    """Share of the vocabulary types (π > 0) seen less than once per batch, B·π < 1 (T3's line:
    under AdamW these are the tokens whose equilibrium margin shrinks as √(Bπ)/λ)."""
    pi = np.asarray(pi, dtype=float)
    return float((pi[pi > 0] * tokens_per_batch < 1).mean())


def tidy_rows(res: LMSweepResult, scheme: str = "log3") -> list[dict]:
    rows = []
    for split in ("train", "heldout"):
        s = res.summary(split, scheme)
        for i, lam in enumerate(res.lams):
            for j, seed in enumerate(res.seeds):
                base = {"split": split, "lam": float(lam), "seed": seed}
                rows.append({**base, "metric": "aggregate", "value": float(s["aggregate_seeds"][i, j])})
                rows.append({**base, "metric": "token_balanced", "value": float(s["token_balanced_seeds"][i, j])})
                rows += [{**base, "metric": "bucket_loss", "bucket": b, "value": float(v)}
                         for b, v in enumerate(s["bucket_loss_seeds"][i, j])]
    return rows


def _fmt(m, ci):
    return "–" if not np.isfinite(m) else f"{m:.4g}" if not np.isfinite(ci) else f"{m:.4g} ± {ci:.2g}"


def _tables(res, scheme) -> list[str]:
    lines = []
    B = res.tokens_per_batch
    pi = res.token_probs
    ids = frequency_buckets(pi, scheme=scheme)
    for split in ("train", "heldout"):
        s = res.summary(split, scheme)
        nb = s["bucket_loss"].shape[1]
        lines += [f"\n### {'Held-out' if split == 'heldout' else 'Training'} loss (nats), seed mean ± 95 % CI\n",
                  "| λ | aggregate | token-balanced | " + " | ".join(f"bucket {b}" for b in range(nb)) + " |",
                  "|---|---|---|" + "---|" * nb]
        for i, lam in enumerate(res.lams):
            cells = [_fmt(s["aggregate"][i], s["aggregate_ci"][i]), _fmt(s["token_balanced"][i],
                                                                          s["token_balanced_ci"][i])]
            cells += [_fmt(s["bucket_loss"][i, b], s["bucket_loss_ci"][i, b]) for b in range(nb)]
            lines.append(f"| {lam:g} | " + " | ".join(cells) + " |")
        lines += [f"\nChange from λ = {res.lams[0]:g}, paired by seed (mean ± 95 % CI):\n",
                  "| λ | aggregate | token-balanced | " + " | ".join(f"bucket {b}" for b in range(nb)) + " |",
                  "|---|---|---|" + "---|" * nb]
        for i, lam in enumerate(res.lams[1:], start=1):
            cells = [_fmt(s[k + "_delta"][i], s[k + "_delta_ci"][i]) for k in ("aggregate", "token_balanced")]
            cells += [_fmt(s["bucket_loss_delta"][i, b], s["bucket_loss_delta_ci"][i, b]) for b in range(nb)]
            lines.append(f"| {lam:g} | " + " | ".join(cells) + " |")
    t3 = t3_lines(pi, B, scheme=scheme)
    lines += ["\n### Buckets and T3's line\n",
              "| bucket | token types | B·π range (B = tokens per batch) | share with B·π < 1 | mean ρ(B·π) | "
              "T3 margin / head's |", "|---|---:|---|---:|---:|---:|"]
    for b in range(int(ids.max()) + 1):
        p = pi[ids == b]
        lines.append(f"| {b} | {p.size} | {B * p.min():.3g} – {B * p.max():.3g} | {t3.below_one_per_batch[b]:.0%} | "
                     f"{t3.rho[b]:.3f} | {t3.margin_ratio[b]:.3f} |")
    return lines


_T3_TEXT = ("T3 (AdamW equilibrium, one-hot contexts): a token's gradient signal-to-noise ratio is "
            "ρ = √(Bπ / (1 + (B − 1)π)) and its equilibrium margin is ∝ ρ/λ, so at every λ > 0 a token seen less "
            "than once per batch keeps only the fraction ρ ≈ √(Bπ) of a frequent token's margin (last column). "
            "What applies to this model: the ordering (decoupled decay costs a token margin in proportion to "
            "how rarely it appears in a batch). What does not: the closed-form margins, which are for one-hot "
            "contexts and a deterministic successor, not for a transformer's shared representations.")

_T7_TEXT = ("T7/T8 (factored bigram LM, L2 decay, solved exactly on this training stream; tied embeddings as "
            "the model when the model's are tied): per-bucket *training* loss of the bigram optimum, and T8's "
            "copy-family collapse frequency π* (λ/2 tied, λ untied) with the share of token types at or below "
            "it. What applies: the shape, on the same tokens and buckets (which buckets lose their fit first "
            "as decay grows). What does not: the scale of λ (an L2 coefficient here; AdamW's decoupled decay is "
            "not an L2 penalty, so its λ is on another axis), the absolute losses (a bigram, not a model with "
            "context), and T8's threshold is exact only for the copy family, a reference line on real text.")


def _factored_md(fl: FactoredLines) -> list[str]:
    nb = fl.bucket_loss.shape[1]
    lines = ["\n### T7/T8: the factored bigram optimum on the same token stream\n", _T7_TEXT, "",
             "| L2 λ | π* | types with π ≤ π* | aggregate | token-balanced | "
             + " | ".join(f"bucket {b}" for b in range(nb)) + " |", "|---|---|---|---|---|" + "---|" * nb]
    for i, lam in enumerate(fl.lams):
        cells = [f"{fl.collapse_frequency[i]:.3g}", f"{fl.below_collapse[i]:.0%}", f"{fl.aggregate[i]:.4g}",
                 f"{fl.token_balanced[i]:.4g}"] + [_fmt(v, np.nan) for v in fl.bucket_loss[i]]
        lines.append(f"| {lam:.3g} | " + " | ".join(cells) + " |")
    return lines


def write_sweep_report(res: LMSweepResult, out, *, header: str = "", scheme: str = "log3",
                       factored: FactoredLines | None = None) -> Path:
    """``factored``: :func:`imbalance.lm.predictions.factored_lines` on the training stream (same
    ``scheme``), drawn as a fourth panel and tabled; None leaves T7/T8 out."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    use_style()
    with open(out / "results.jsonl", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in tidy_rows(res, scheme)))
    figs = []
    fig, axes = plt.subplots(1, 3 if factored is None else 4, figsize=(15 if factored is None else 20, 4))
    for ax, split in zip(axes, ("train", "heldout")):
        s = res.summary(split, scheme)
        bucket_loss_vs_lambda(ax, res.lams, s["bucket_loss"], s["bucket_loss_ci"])
        ax.set_title(f"{split} loss per frequency bucket")
    sh = res.summary("heldout", scheme)
    st = res.summary("train", scheme)
    aggregate_vs_balanced_by_lambda(axes[2], res.lams, sh["aggregate"], sh["token_balanced"], sh["aggregate_ci"],
                                    sh["token_balanced_ci"], label="(held-out)")
    aggregate_vs_balanced_by_lambda(axes[2], res.lams, st["aggregate"], st["token_balanced"], st["aggregate_ci"],
                                    st["token_balanced_ci"], label="(train)")
    if factored is not None:
        bucket_loss_vs_lambda(axes[3], factored.lams, factored.bucket_loss)
        axes[3].set_xlabel("L2 weight decay λ (its own scale)")
        axes[3].set_title("T7: factored bigram optimum, same stream (train)")
    figs.append(("paradox", fig))
    fig, axes = plt.subplots(1, res.lams.size, figsize=(4 * res.lams.size, 3.5), squeeze=False)
    for ax, lam, runs in zip(axes[0], res.lams, res.curves):
        steps = [r["step"] for r in runs[0]]
        # every seed is evaluated on the same windows, so a bucket empty there is empty for all
        bl = np.mean([[np.array(r["heldout"]["bucket_loss"], dtype=float) for r in run] for run in runs], 0)
        bucket_learning_curves(ax, steps, bl, title=f"held-out, λ = {lam:g}")
    figs.append(("curves", fig))
    for name, fig in figs:
        fig.tight_layout()
        for ext in ("png", "svg"):
            fig.savefig(out / f"{name}.{ext}")
        plt.close(fig)
    md = ["# Weight decay and rare tokens in a GPT-style model", "", header,
          (f"λ = {', '.join(f'{v:g}' for v in res.lams)}; seeds {list(res.seeds)}; "
           f"{res.tokens_per_batch} tokens per batch; buckets: {scheme} of the training-split frequencies."),
          (f"Vocabulary types seen less than once per batch (B·π < 1): "
           f"{below_one_per_batch(res.token_probs, res.tokens_per_batch):.1%}."),
          "", "![per-bucket loss against λ; aggregate and token-balanced](paradox.png)", "",
          "![held-out learning curves per bucket](curves.png)", *_tables(res, scheme), "", _T3_TEXT,
          *([] if factored is None else _factored_md(factored)),
          "\n### What was decayed\n", format_decay_table(res.decay_table), ""]
    (out / "report.md").write_text("\n".join(md))
    return out / "report.md"
