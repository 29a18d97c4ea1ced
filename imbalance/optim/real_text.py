"""FairAdamW variants in a GPT-style model on real text (regime (b): a generalising LM).

``real_text_split`` cuts a small corpus (the first ``n_chars`` characters of a text file, by default
the shipped King James Bible) and tokenises it with a byte-level BPE; ``real_text_outcome`` trains one
``imbalance.lm`` run per seed with ``TrainConfig(optimizer=...)`` and measures aggregate loss, the
tail loss (the rarest log3 buckets by training frequency, pooled from the rarest up until they hold
``MIN_TAIL_HELDOUT`` held-out occurrences: the rarest bucket alone may hold one held-out token)
and the top-1 ECE on the training and held-out splits. ``real_text_rows`` runs plain AdamW over a λ
grid, then every variant at a chosen λ (by default the λ > 0 whose held-out tail loss is lowest),
with the two mitigations of the copy-task LM (``imbalance.optim.lm``) at the same λ: 1/π loss
reweighting (``TrainConfig(loss_weighting="inverse-frequency")``, trained) and post-hoc logit
adjustment z − τ log π (Menon et al. 2021, arXiv 2007.07314; the AdamW models, adjusted at evaluation).
``python -m imbalance.optim.real_text`` prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from .hooks import OPTIMIZERS
from .pareto import LMOutcome, pareto_table, rows_from_json, rows_to_json, target_table

__all__ = ["real_text_split", "real_text_outcome", "mitigation_rows", "real_text_rows", "heldout_tail_bucket",
           "tail_loss", "window_ece"]


def real_text_split(out, *, n_chars=700_000, vocab=1024, heldout_fraction=0.1, context=64, text=None):
    """A ``TokenSplit`` of the first ``n_chars`` characters of ``text`` (default: the shipped corpus),
    BPE of ``vocab`` types, files under ``out``."""
    from ..lm.corpus import shipped_corpus_text
    from ..lm.tokenizer import train_bpe
    from ..lm.tokens import TokenSplit, encode_corpus

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    body = shipped_corpus_text() if text is None else Path(text).read_text(encoding="utf-8")
    path = out / f"corpus-{n_chars}.txt"
    path.write_text(body[:n_chars], encoding="utf-8")
    tok = train_bpe(path, vocab)
    return TokenSplit(encode_corpus(path, tok, out / "tokens"), context, heldout_fraction)


@torch.no_grad()
def window_ece(model, windows, batch_size=32, n_bins=15, logit_bias=None) -> float:
    """Top-1 expected calibration error of a causal LM over ``windows`` (n, T+1); ``logit_bias`` (V,)
    is added to the logits first."""
    from ..lm.losses import logits_of

    model.eval()
    bias = 0.0 if logit_bias is None else torch.as_tensor(logit_bias, dtype=torch.float32)  # (V,)
    conf, corr = [], []
    for i in range(0, windows.shape[0], batch_size):
        w = windows[i:i + batch_size]                                        # (b, T+1)
        p = torch.softmax(logits_of(model, w[:, :-1]).float() + bias, dim=-1)  # (b, T, V)
        top, arg = p.max(-1)                                                 # (b, T)
        conf.append(top.reshape(-1).double())
        corr.append((arg == w[:, 1:]).reshape(-1).double())
    return float(metrics.expected_calibration_error(torch.cat(conf).numpy(), torch.cat(corr).numpy(), n_bins))


MIN_TAIL_HELDOUT = 50  # held-out occurrences in the tail: its loss then has a per-seed SE of a fraction of a nat


def heldout_tail_bucket(split, scheme="log3", min_heldout=MIN_TAIL_HELDOUT) -> int:
    """The first bucket k of the tail: buckets k, k+1, … (by training π, rarest last) pooled hold at least
    ``min_heldout`` held-out occurrences, and k is the largest such bucket."""
    from ..zipf import frequency_buckets

    ids = frequency_buckets(split.token_probs, scheme=scheme)                 # (V,)
    held = np.bincount(split.heldout, minlength=split.vocab_size)            # (V,)
    per_bucket = np.bincount(ids[ids >= 0], weights=held[ids >= 0])          # (n_b,)
    pooled = np.cumsum(per_bucket[::-1])[::-1]                                # (n_b,) occurrences in buckets ≥ k
    if pooled[0] < min_heldout:
        raise ValueError(f"min_heldout={min_heldout} exceeds the held-out split's {int(pooled[0])} tokens")
    return int(np.flatnonzero(pooled >= min_heldout).max())


def tail_loss(sums, counts, pi, first_bucket, scheme="log3") -> float:
    """Mean CE over the occurrences of the tokens in buckets ≥ ``first_bucket`` (NaN if none)."""
    from ..zipf import frequency_buckets

    ids = frequency_buckets(pi, scheme=scheme)                                # (V,)
    tail = ids >= first_bucket
    n = float(np.asarray(counts)[tail].sum())
    return float(np.asarray(sums)[tail].sum() / n) if n > 0 else float("nan")


def real_text_outcome(split, lam, cfg, optimizer, *, seeds=(0, 1, 2), out, name=None, tau=None) -> LMOutcome:
    """One ``imbalance.lm.train.train_run`` per seed with ``cfg`` and ``optimizer`` (stored, resumable,
    under ``out``), measured on the whole training and held-out splits. ``tau``: the same trained
    models evaluated with the post-hoc logit adjustment −τ log π (π: training-split frequencies)."""
    from transformers import GPT2LMHeadModel

    from ..lm.losses import loss_summary, per_token_loss_sums
    from ..lm.train import train_run
    from ..sim.paradox import posthoc_bias

    cfg = dataclasses.replace(cfg, optimizer=optimizer)
    bias = None if tau is None else posthoc_bias(split.token_probs, tau)  # (V,)
    tail = heldout_tail_bucket(split, cfg.bucket_scheme)
    held = split.windows("heldout")
    data = {"train": split.windows("train")[: held.shape[0]], "heldout": held}
    vals = {f: [] for f in ("train_aggregate", "heldout_aggregate", "train_tail", "heldout_tail", "train_ece",
                            "heldout_ece")}
    weighting = "" if cfg.loss_weighting == "none" else f"-{cfg.loss_weighting}"
    for seed in seeds:
        run = Path(out) / f"{optimizer}{weighting}-lam{float(lam):g}-seed{int(seed)}"
        res = train_run(split, lam, seed, cfg, out=run, device="cpu", save_model=True, progress=False)
        model = GPT2LMHeadModel.from_pretrained(run / "model")
        for s in ("train", "heldout"):
            sums, counts = getattr(res, f"{s}_sums"), getattr(res, f"{s}_counts")
            if bias is not None:  # the same evaluation as train_run's final one, on adjusted logits
                sums, counts = per_token_loss_sums(model, split.windows(s, cfg.final_eval_tokens), split.vocab_size,
                                                   batch_size=cfg.eval_batch_size, logit_bias=bias)
            summ = loss_summary(sums, counts, split.token_probs, scheme=cfg.bucket_scheme)
            vals[f"{s}_aggregate"].append(summ["aggregate"])
            vals[f"{s}_tail"].append(tail_loss(sums, counts, split.token_probs, tail, cfg.bucket_scheme))
            vals[f"{s}_ece"].append(window_ece(model, data[s], cfg.eval_batch_size, logit_bias=bias))
    return LMOutcome(name=name or optimizer, lam=float(lam), **{k: np.array(v) for k, v in vals.items()})


def mitigation_rows(split, lam, cfg, *, out, seeds=(0, 1, 2), tau=1.0, progress=None) -> list:
    """At one λ: every FairAdamW variant, 1/π loss reweighting (trained) and the post-hoc logit adjustment
    (τ) of the plain AdamW models (their runs under ``out``, trained when absent)."""
    say = progress or (lambda msg: None)
    rows = []
    for opt in OPTIMIZERS[1:]:
        say(f"{opt} λ={lam:g}")
        rows.append(real_text_outcome(split, lam, cfg, opt, seeds=seeds, out=out))
    say(f"1/π reweighting λ={lam:g}")
    rows.append(real_text_outcome(split, lam, dataclasses.replace(cfg, loss_weighting="inverse-frequency"), "adamw",
                                  seeds=seeds, out=out, name="1/π reweighting"))
    say(f"post-hoc τ={tau:g} λ={lam:g}")
    rows.append(real_text_outcome(split, lam, cfg, "adamw", seeds=seeds, out=out, name=f"post-hoc τ={tau:g}",
                                  tau=tau))
    return rows


def real_text_rows(split, cfg, *, out, lams=(0.0, 1.0), seeds=(0, 1, 2), tau=1.0, variants_at=None, also_at=(),
                   progress=None) -> list:
    """Plain AdamW at every λ; ``mitigation_rows`` at ``variants_at`` (None: the λ > 0 with the lowest
    held-out tail loss, seed mean) and at each λ of ``also_at``."""
    say = progress or (lambda msg: None)
    rows = []
    for lam in lams:
        say(f"AdamW λ={lam:g}")
        rows.append(real_text_outcome(split, lam, cfg, "adamw", seeds=seeds, out=out, name="AdamW"))
    best = variants_at if variants_at is not None else min((r for r in rows if r.lam > 0),
                                                           key=lambda r: np.nanmean(r.heldout_tail)).lam
    for lam in [best] + [float(v) for v in also_at if not np.isclose(v, best)]:
        rows += mitigation_rows(split, lam, cfg, out=out, seeds=seeds, tau=tau, progress=progress)
    return rows


def main(argv=None):
    from ..lm.train import TrainConfig

    parser = argparse.ArgumentParser(description="Pareto table of FairAdamW variants on real text (regime b)")
    parser.add_argument("--out", type=Path, default=Path("fair-real-text"))
    parser.add_argument("--chars", type=int, default=600_000)
    parser.add_argument("--lams", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0])
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=650)
    parser.add_argument("--tau", type=float, default=1.0, help="post-hoc logit adjustment −τ log π")
    parser.add_argument("--variants-at", type=float, default=None, help="λ of the variants and mitigations "
                        "(default: the λ > 0 of --lams with the lowest held-out tail loss)")
    parser.add_argument("--also-at", type=float, nargs="*", default=[], help="λs at which to run the variants and "
                        "mitigations besides the one with the lowest held-out tail loss")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--untied", action="store_true")
    parser.add_argument("--json", help="write the per-seed rows to this JSON file")
    parser.add_argument("--add-to", help="a rows file (--json of an earlier run, same settings and --out): train "
                        "only plain AdamW at --lams and add those rows to it")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    split = real_text_split(args.out, n_chars=args.chars, vocab=args.vocab)
    cfg = TrainConfig(layers=2, width=64, heads=4, context=64, tied=not args.untied, steps=args.steps,
                      batch_size=16, lr=3e-3, warmup=50, eval_every=args.steps, eval_tokens=4096)
    seeds = tuple(range(args.seeds))
    if args.add_to:
        rows = rows_from_json(args.add_to)[0] + [real_text_outcome(split, lam, cfg, "adamw", seeds=seeds,
                                                                   out=args.out / "runs", name="AdamW")
                                                 for lam in args.lams]
        rows.sort(key=lambda r: (r.name != "AdamW", r.lam))
    else:
        rows = real_text_rows(split, cfg, out=args.out / "runs", lams=tuple(args.lams), seeds=seeds, tau=args.tau,
                              variants_at=args.variants_at, also_at=tuple(args.also_at),
                              progress=lambda m: print(f"[{time.perf_counter() - t0:.0f} s] {m}", flush=True))
    n_train = split.train.size
    settings = (f"first {args.chars:,} characters of the shipped corpus, BPE {split.vocab_size} types, "
                f"{n_train:,} training / {split.heldout.size:,} held-out tokens; GPT-2 2 layers, width 64, context 64, "
                f"{'untied' if args.untied else 'tied'} embeddings, {args.steps} steps of {cfg.tokens_per_step} tokens "
                f"({args.steps * cfg.tokens_per_step / n_train:.1f} epochs), lr 3e-3 cosine, seeds 0-{args.seeds - 1}; "
                f"tail: buckets {heldout_tail_bucket(split)}+ of log3 ({MIN_TAIL_HELDOUT}+ held-out occurrences)")
    print(pareto_table(rows), target_table(rows), sep="\n\n")
    print(f"({time.perf_counter() - t0:.0f} s; {settings})")
    if args.json:
        rows_to_json(rows, args.json, regime="b", settings=settings)


if __name__ == "__main__":
    main()
