"""Command line: ``imbalance reproduce`` and ``imbalance lm train|audit`` (also ``python -m imbalance ...``)."""

from __future__ import annotations

import argparse
import contextlib
import signal
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
            keys = [k for k in ("run", "optimizer", "lam", "aggregate_loss", "token_balanced_loss", "tail_minus_head",
                                 "ece")
                    if k in s.rows[0]]
            print("  ".join(f"{k:>19}" for k in keys))
            for r in s.rows:
                print("  ".join(f"{r[k]:>19.4g}" if isinstance(r[k], float) else f"{r[k]:>19}" for k in keys))
    return ok


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().lstrip("-"), value


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a plain `kill`) unwinds like Ctrl-C, so running sweep jobs are cancelled and
    their checkpoints stay consistent; a rerun resumes them."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _add_reproduce_parser(sub, executors) -> None:
    """The ``reproduce`` verb and its options."""
    rep = sub.add_parser(
        "reproduce", help="run the reproduction, write report.md, figures and results.jsonl",
        description="Run every section of the report and write report.md, the figures and results.jsonl to --out. "
                    "Every training sweep is stored under OUT/sweeps/<section>-<run>-<hash of its settings>: "
                    "rerun the same command after a kill and finished sweeps are read back, unfinished ones resume "
                    "from their last checkpoint; other settings get other directories.")
    rep.add_argument("--fast", action="store_true", help="small settings, for a quick look and for tests")
    rep.add_argument("--out", type=Path, default=Path("reproduce-out"),
                     help="output directory; sweeps are kept in OUT/sweeps (default: %(default)s)")
    rep.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device for simulations")
    rep.add_argument("--seeds", type=int, default=3, help="seeds per simulated configuration")
    rep.add_argument("--text", type=Path, default=None,
                     help="run the bigram, factored-bigram and small-LM parts on this text file (word tokens, "
                          "vocabulary capped, <unk> for the rest)")
    rep.add_argument("--fresh", action="store_true", help="delete OUT/sweeps first: retrain every sweep")
    grp = rep.add_argument_group("scale-out", "where the training sweeps run (through submitit)")
    grp.add_argument("--executor", default="local", choices=executors,
                     help="local: one subprocess per sweep job on this machine (default); slurm: one sbatch job "
                          "per sweep job (OUT must be on a shared file system); inline: in this process")
    grp.add_argument("--lam-jobs", type=int, default=1, metavar="N",
                     help="split each sweep into up to N jobs along its λ grid (default: 1)")
    grp.add_argument("--slurm-partition", default=None, help="slurm partition")
    grp.add_argument("--slurm-time", type=int, default=60, metavar="MIN",
                     help="time limit per job in minutes; a job that reaches it is requeued and resumes "
                          "(default: %(default)s)")
    grp.add_argument("--slurm-gpus", type=int, default=None, metavar="N",
                     help="GPUs per job (default: 1 with --device cuda, else 0)")
    grp.add_argument("--slurm-cpus", type=int, default=None, metavar="N", help="CPUs per job")
    grp.add_argument("--slurm-mem-gb", type=float, default=None, metavar="GB", help="memory per job")
    grp.add_argument("--slurm-param", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="extra sbatch option, written as '#SBATCH --KEY=VALUE' (repeatable), e.g. account=abc")


def main(argv: list[str] | None = None) -> int:
    from .sim.scaleout import EXECUTORS, SlurmOptions, SweepRunner

    parser = argparse.ArgumentParser(prog="imbalance", description="How weight decay makes softmax models "
                                     "neglect rare tokens: exact theory checked against independent computation.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_reproduce_parser(sub, EXECUTORS)
    from .lm.cli import add_lm_commands

    add_lm_commands(sub)
    args = parser.parse_args(argv)
    if args.command == "lm":
        try:
            return args.lm_handler(args)
        except (ValueError, FileNotFoundError) as e:
            print(f"imbalance lm {args.lm_command}: error: {e}", file=sys.stderr)
            return 2
    if args.text is not None and not args.text.is_file():
        parser.error(f"--text: no such file: {args.text}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.lam_jobs < 1:
        parser.error(f"--lam-jobs must be >= 1, got {args.lam_jobs}")
    try:
        slurm = SlurmOptions(partition=args.slurm_partition, time_min=args.slurm_time, gpus=args.slurm_gpus,
                             cpus=args.slurm_cpus, mem_gb=args.slurm_mem_gb, params=dict(args.slurm_param))
        runner = SweepRunner(args.executor, args.out / "sweeps", lam_jobs=args.lam_jobs, slurm=slurm,
                             fresh=args.fresh, device=args.device)
    except (ValueError, RuntimeError) as e:  # RuntimeError: submitit finds no slurm here
        parser.error(f"--executor {args.executor}: {e}")
    t0 = time.perf_counter()
    with _terminate_as_interrupt():
        try:
            sections = run(Settings(fast=args.fast, seeds=args.seeds, device=args.device, text=args.text,
                                    runner=runner))
        except KeyboardInterrupt:
            runner.cancel()  # no job keeps writing into OUT/sweeps after this process is gone
            print(f"\ninterrupted: {runner.summary()}; rerun the same command to resume", file=sys.stderr)
            return 130
        except BaseException:
            runner.cancel()
            raise
    report = write_report(sections, args.out)
    ok = _print_summary(sections)
    print(f"\nsweeps: {runner.summary()}")
    print(f"report: {report}  ({time.perf_counter() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
