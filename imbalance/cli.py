"""Command line: ``imbalance reproduce`` (also ``python -m imbalance reproduce``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .reproduce import Settings, run, write_report


def _print_summary(sections) -> bool:
    ok = True
    checks = [c for s in sections for c in s.checks]
    print(f"{'theorem':<8} {'check':<78} {'error':>9} {'tol':>8}  ok")
    for c in checks:
        ok &= c.passed
        print(f"{c.theorem:<8} {c.what[:78]:<78} {c.error:9.2e} {c.tolerance:8.0e}  {'yes' if c.passed else 'NO'}")
    for s in sections:
        if s.rows and "aggregate_loss" in s.rows[0]:
            print(f"\n{s.title}")
            keys = [k for k in ("run", "optimizer", "lam", "aggregate_loss", "token_balanced_loss", "tail_minus_head")
                    if k in s.rows[0]]
            print("  ".join(f"{k:>19}" for k in keys))
            for r in s.rows:
                print("  ".join(f"{r[k]:>19.4g}" if isinstance(r[k], float) else f"{r[k]:>19}" for k in keys))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imbalance", description="How weight decay makes softmax models "
                                     "neglect rare tokens: exact theory checked against independent computation.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("reproduce", help="run the reproduction, write report.md, figures and results.jsonl")
    rep.add_argument("--fast", action="store_true", help="small settings (well under 2 minutes on 2 CPU cores)")
    rep.add_argument("--out", type=Path, default=Path("reproduce-out"), help="output directory")
    rep.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device for simulations")
    rep.add_argument("--seeds", type=int, default=3, help="seeds per simulated configuration")
    rep.add_argument("--text", type=Path, default=None, help="run the bigram parts on this text file (word tokens)")
    args = parser.parse_args(argv)
    if args.text is not None and not args.text.is_file():
        parser.error(f"--text: no such file: {args.text}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    t0 = time.perf_counter()
    sections = run(Settings(fast=args.fast, seeds=args.seeds, device=args.device, text=args.text))
    report = write_report(sections, args.out)
    ok = _print_summary(sections)
    print(f"\nreport: {report}  ({time.perf_counter() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
