"""Command line: ``imbalance reproduce`` (also ``python -m imbalance reproduce``).

At this stage it runs the exact-theory part of the reproduction: the unigram bias
shift (T1), the margin laws under SGD and AdamW (T2, T3) and the bigram equilibria of a
Zipfian token stream, and prints their tables. The simulation and language-model
parts join it as they land.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import frequency_buckets, zipf_pmf
from .theory import bigram_equilibrium, margin_law, unigram_equilibrium


def _bucket_means(loss: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """Mean per-token loss in each powers-of-3 frequency bucket (0 = most frequent)."""
    ids = frequency_buckets(freq, "log3")
    ok = (ids >= 0) & np.isfinite(loss)
    return np.array([loss[ok & (ids == b)].mean() for b in range(ids.max() + 1) if np.any(ok & (ids == b))])


def _zipf_stream_counts(V: int, n_tokens: int, s: float, seed: int) -> np.ndarray:
    """Bigram counts of a first-order Markov stream whose rows are shuffled Zipf laws."""
    rng = np.random.default_rng(seed)
    base = zipf_pmf(V, s)
    trans = np.stack([base[rng.permutation(V)] * 0.3 + base * 0.7 for _ in range(V)])  # (V, V)
    trans /= trans.sum(1, keepdims=True)
    x = rng.choice(V, p=base)
    C = np.zeros((V, V))
    cum = np.cumsum(trans, axis=1)
    u = rng.random(n_tokens)
    for t in range(n_tokens):
        y = min(int(np.searchsorted(cum[x], u[t] * cum[x, -1])), V - 1)
        C[x, y] += 1
        x = y
    return C


def reproduce(out: Path | None, fast: bool) -> list[dict]:
    rows: list[dict] = []
    lams = np.array([1e-3, 1e-2, 1e-1, 1.0]) if fast else np.array([1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0])

    print("T1 unigram model, K = 1000, Zipf s = 1.1 (exact)")
    pi = zipf_pmf(1000, 1.1)
    uni = unigram_equilibrium(pi, lams)
    print(f"{'lambda':>8} {'aggregate':>10} {'balanced':>10} {'tail-head':>10} {'b_head':>8} {'b_tail':>8}")
    for i, lam in enumerate(lams):
        b = _bucket_means(uni.loss_per_token[i], pi)
        row = dict(part="unigram", lam=float(lam), aggregate_loss=float(uni.aggregate_loss[i]),
                   token_balanced_loss=float(uni.token_balanced_loss[i]), gap=float(b[-1] - b[0]),
                   logit_head=float(uni.logits[i, 0]), logit_tail=float(uni.logits[i, -1]))
        rows.append(row)
        print(f"{lam:8.0e} {row['aggregate_loss']:10.4f} {row['token_balanced_loss']:10.4f} {row['gap']:10.4f} "
              f"{row['logit_head']:8.3f} {row['logit_tail']:8.3f}")

    print("\nT2/T3 deterministic bigram, K = 64, Zipf s = 1.2: margins of classes 1, 8, 64")
    pi = zipf_pmf(64, 1.2)
    print(f"{'lambda':>8} {'SGD m1':>8} {'m8':>8} {'m64':>8} {'AdamW(B=64) m1':>15} {'m8':>8} {'m64':>8}")
    for lam in lams:
        sgd = margin_law(pi, lam)
        adw = margin_law(pi, lam, optimizer="adamw", batch_size=64)
        rows.append(dict(part="margin_law", lam=float(lam), sgd_margins=sgd.margins.tolist(),
                         adamw_margins=adw.margins.tolist()))
        print(f"{lam:8.0e} {sgd.margins[0]:8.2f} {sgd.margins[7]:8.2f} {sgd.margins[63]:8.2f} "
              f"{adw.margins[0]:15.2f} {adw.margins[7]:8.2f} {adw.margins[63]:8.2f}")

    V, n_tok = (200, 100_000) if fast else (500, 1_000_000)
    print(f"\nBigram model of a Zipfian Markov stream (V = {V}, {n_tok:,} tokens), exact equilibria")
    C = _zipf_stream_counts(V, n_tok, 1.1, seed=0)
    freq = C.sum(0)
    print(f"{'lambda':>8} {'opt':>6} {'aggregate':>10} {'balanced':>10} {'tail-head':>10}")
    for opt in ("sgd", "adamw"):
        eq = bigram_equilibrium(C, lams, optimizer=opt, batch_size=256)
        for i, lam in enumerate(lams):
            b = _bucket_means(eq.loss_per_token[i], freq)
            row = dict(part="bigram", optimizer=opt, lam=float(lam), aggregate_loss=float(eq.aggregate_loss[i]),
                       token_balanced_loss=float(eq.token_balanced_loss[i]), gap=float(b[-1] - b[0]))
            rows.append(row)
            print(f"{lam:8.0e} {opt:>6} {row['aggregate_loss']:10.4f} {row['token_balanced_loss']:10.4f} "
                  f"{row['gap']:10.4f}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "results.jsonl", "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
        print(f"\nresults written to {out / 'results.jsonl'}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imbalance", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run the reproduction and print its tables")
    rep.add_argument("--fast", action="store_true", help="smaller settings (seconds)")
    rep.add_argument("--out", type=Path, default=Path("reproduce-out"), help="output directory (results.jsonl)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    reproduce(args.out, args.fast)
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
