"""FairAdamW variants in a GPT-style model on real text (regime (b): a generalising LM).

``real_text_split`` cuts a small corpus (the first ``n_chars`` characters of a text file, by default
the shipped King James Bible) and tokenises it with a byte-level BPE; ``real_text_outcome`` trains one
``imbalance.lm`` run per seed with ``TrainConfig(optimizer=...)`` and measures aggregate loss, the
tail-bucket loss (the rarest log3 bucket, by training frequency, that occurs in the held-out split)
and the top-1 ECE on the training and held-out splits. ``real_text_rows`` runs plain AdamW over a λ
grid, then every variant at the λ > 0 whose held-out tail loss is lowest (where decay helps rare
held-out tokens most). ``python -m imbalance.optim.real_text`` prints the tables.
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

__all__ = ["real_text_split", "real_text_outcome", "real_text_rows", "heldout_tail_bucket", "window_ece"]


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
def window_ece(model, windows, batch_size=32, n_bins=15) -> float:
    """Top-1 expected calibration error of a causal LM over ``windows`` (n, T+1)."""
    from ..lm.losses import logits_of

    model.eval()
    conf, corr = [], []
    for i in range(0, windows.shape[0], batch_size):
        w = windows[i:i + batch_size]                                        # (b, T+1)
        p = torch.softmax(logits_of(model, w[:, :-1]).float(), dim=-1)       # (b, T, V)
        top, arg = p.max(-1)                                                 # (b, T)
        conf.append(top.reshape(-1).double())
        corr.append((arg == w[:, 1:]).reshape(-1).double())
    return float(metrics.expected_calibration_error(torch.cat(conf).numpy(), torch.cat(corr).numpy(), n_bins))


def heldout_tail_bucket(split, scheme="log3") -> int:
    """The rarest log3 bucket (by training π) with at least one held-out occurrence."""
    from ..zipf import frequency_buckets

    ids = frequency_buckets(split.token_probs, scheme=scheme)
    held = np.bincount(split.heldout, minlength=split.vocab_size) > 0
    return int(ids[held & (ids >= 0)].max())


def real_text_outcome(split, lam, cfg, optimizer, *, seeds=(0, 1, 2), out, name=None) -> LMOutcome:
    """One ``imbalance.lm.train.train_run`` per seed with ``cfg`` and ``optimizer`` (stored, resumable,
    under ``out``), measured on the whole training and held-out splits."""
    from transformers import GPT2LMHeadModel

    from ..lm.losses import loss_summary
    from ..lm.train import train_run

    cfg = dataclasses.replace(cfg, optimizer=optimizer)
    tail = heldout_tail_bucket(split, cfg.bucket_scheme)
    held = split.windows("heldout")
    data = {"train": split.windows("train")[: held.shape[0]], "heldout": held}
    vals = {f: [] for f in ("train_aggregate", "heldout_aggregate", "train_tail", "heldout_tail", "train_ece",
                            "heldout_ece")}
    for seed in seeds:
        run = Path(out) / f"{optimizer}-lam{float(lam):g}-seed{int(seed)}"
        res = train_run(split, lam, seed, cfg, out=run, device="cpu", save_model=True, progress=False)
        model = GPT2LMHeadModel.from_pretrained(run / "model")
        for s in ("train", "heldout"):
            summ = loss_summary(getattr(res, f"{s}_sums"), getattr(res, f"{s}_counts"), split.token_probs,
                                scheme=cfg.bucket_scheme)
            vals[f"{s}_aggregate"].append(summ["aggregate"])
            vals[f"{s}_tail"].append(np.nan if summ["bucket_loss"][tail] is None else summ["bucket_loss"][tail])
            vals[f"{s}_ece"].append(window_ece(model, data[s], cfg.eval_batch_size))
    return LMOutcome(name=name or optimizer, lam=float(lam), **{k: np.array(v) for k, v in vals.items()})


def real_text_rows(split, cfg, *, out, lams=(0.0, 1.0), seeds=(0, 1, 2), progress=None) -> list:
    """Plain AdamW at every λ; every FairAdamW variant at the λ > 0 with the lowest held-out tail loss."""
    say = progress or (lambda msg: None)
    rows = []
    for lam in lams:
        say(f"AdamW λ={lam:g}")
        rows.append(real_text_outcome(split, lam, cfg, "adamw", seeds=seeds, out=out, name="AdamW"))
    best = min((r for r in rows if r.lam > 0), key=lambda r: np.nanmean(r.heldout_tail)).lam
    for opt in OPTIMIZERS[1:]:
        say(f"{opt} λ={best:g}")
        rows.append(real_text_outcome(split, best, cfg, opt, seeds=seeds, out=out))
    return rows


def main(argv=None):
    from ..lm.train import TrainConfig

    parser = argparse.ArgumentParser(description="Pareto table of FairAdamW variants on real text (regime b)")
    parser.add_argument("--out", type=Path, default=Path("fair-real-text"))
    parser.add_argument("--chars", type=int, default=350_000)
    parser.add_argument("--lams", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=1000)
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
        rows = real_text_rows(split, cfg, out=args.out / "runs", lams=tuple(args.lams), seeds=seeds,
                              progress=lambda m: print(f"[{time.perf_counter() - t0:.0f} s] {m}", flush=True))
    n_train = split.train.size
    settings = (f"first {args.chars:,} characters of the shipped corpus, BPE {split.vocab_size} types, "
                f"{n_train:,} training / {split.heldout.size:,} held-out tokens; GPT-2 2 layers, width 64, context 64, "
                f"{'untied' if args.untied else 'tied'} embeddings, {args.steps} steps of {cfg.tokens_per_step} tokens "
                f"({args.steps * cfg.tokens_per_step / n_train:.1f} epochs), lr 3e-3 cosine, seeds 0-{args.seeds - 1}")
    print(pareto_table(rows), target_table(rows), sep="\n\n")
    print(f"({time.perf_counter() - t0:.0f} s; {settings})")
    if args.json:
        rows_to_json(rows, args.json, regime="b", settings=settings)


if __name__ == "__main__":
    main()
