"""A weight-decay sweep of GPT-style models: every (λ, seed) run stored under
``out/runs/lam<λ>-seed<seed>`` and resumable (see :mod:`imbalance.lm.train`), run in this
process or sent through submitit (``imbalance.sim.scaleout.make_executor``: local subprocesses
or Slurm), ``lam_jobs`` jobs over contiguous parts of the λ grid; a job that is preempted or
times out is requeued and resumes from its checkpoints.

The (λ, seed) runs of a part train one after another, not stacked into one vmapped model
(``torch.func.stack_module_state`` + ``functional_call`` + ``vmap``, per-model decay and
clipping, one AdamW step): on a CPU that was slower at every small width measured —
0.64–0.74× the speed of the sequential runs for 4 models of width 32, 64 and 96
(``tests/benchmarks/bench_lm.py::test_stacked_training_against_sequential``, one thread). The
batched matrix products of the stack run slower than the per-model ones, the fused attention
kernel has no batching rule, and at these sizes the per-step Python overhead that stacking
saves is small next to the output layer and its cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from submitit.helpers import Checkpointable

from .._validate import as_positive_int
from ..metrics import mean_ci
from ..sim.scaleout import make_executor
from .losses import loss_summary
from .tokens import TokenSplit, open_token_file
from .train import TrainConfig, train_run

__all__ = ["LMSweepResult", "lm_sweep", "run_dir"]


def _seed_ci(x: np.ndarray) -> np.ndarray:
    """95 % Student-t half-width over seeds (axis 1) of ``x`` (n_λ, S[, n_b]); NaN with one seed and
    where a bucket has no occurrence in the split (its loss is NaN for every seed alike)."""
    half = np.full(x.shape[:1] + x.shape[2:], np.nan)
    if x.shape[1] < 2:
        return half
    ok = np.isfinite(x).all(axis=1)  # (n_λ[, n_b])
    if ok.any():
        half[ok] = mean_ci(np.moveaxis(x, 1, -1)[ok], axis=-1)[1]
    return half


@dataclass(frozen=True)
class LMSweepResult:
    """Per-token loss sums and counts (n_λ, n_seeds, V) on both splits, learning curves
    ``curves[i][j]`` (one dict per evaluation) and the decay table of the runs."""

    lams: np.ndarray
    seeds: tuple
    token_probs: np.ndarray  # (V,) training-split frequencies
    tokens_per_batch: int
    heldout_sums: np.ndarray
    heldout_counts: np.ndarray
    train_sums: np.ndarray
    train_counts: np.ndarray
    curves: list
    decay_table: list

    def summary(self, split: str = "heldout", scheme: str = "log3") -> dict:
        """Seed mean and 95 % Student-t half-width (NaN with one seed) of the aggregate,
        token-balanced and per-bucket loss at each λ: arrays (n_λ,) and (n_λ, n_b); ``*_delta``:
        the change from the first λ paired by seed (every λ of a seed starts from the same
        initialisation and sees the same batches, so the pairing removes most seed noise)."""
        sums, counts = getattr(self, f"{split}_sums"), getattr(self, f"{split}_counts")
        per = [[loss_summary(sums[i, j], counts[i, j], self.token_probs, scheme=scheme)
                for j in range(len(self.seeds))] for i in range(self.lams.size)]
        out = {"bucket_types": np.array(per[0][0]["bucket_types"])}
        for key in ("aggregate", "token_balanced", "bucket_loss"):
            x = np.array([[p[key] for p in row] for row in per], dtype=np.float64)  # (n_λ, S[, n_b])
            out[key] = x.mean(1)
            out[key + "_ci"] = _seed_ci(x)
            out[key + "_seeds"] = x
            d = x - x[:1]  # (n_λ, S[, n_b]) change from the first λ, paired by seed (same init, same batches)
            out[key + "_delta"] = d.mean(1)
            out[key + "_delta_ci"] = _seed_ci(d)
        return out


def run_dir(out, lam: float, seed: int) -> Path:
    return Path(out) / "runs" / f"lam{float(lam):g}-seed{int(seed)}"


def _split_of(token_path, context, heldout_fraction) -> TokenSplit:
    return TokenSplit(open_token_file(token_path), context, heldout_fraction)


def _run_part(token_path, heldout_fraction, lams, seeds, cfg, out, run_kw):
    split = _split_of(token_path, cfg.context, heldout_fraction)
    return [[train_run(split, lam, s, cfg, out=None if out is None else run_dir(out, lam, s), **run_kw)
             for s in seeds] for lam in lams]


class LMSweepJob(Checkpointable):
    """One λ part of a sweep as a submitit job; on preemption it is requeued and resumes."""

    def __call__(self, token_path, heldout_fraction, lams, seeds, cfg, out, run_kw):
        _run_part(token_path, heldout_fraction, lams, seeds, cfg, out, {**run_kw, "progress": False})
        return str(out)


def lm_sweep(token_file, lams, seeds, cfg: TrainConfig, *, out=None, heldout_fraction: float = 0.1,
             executor: str = "inline", lam_jobs: int = 1, slurm=None, device="auto", compile: bool = False,
             save_model: bool = False, progress: bool = True, cluster: str = "slurm") -> LMSweepResult:
    """Train every (λ, seed) (or read back / resume what ``out`` holds) and collect the results.

    ``executor``: "inline" (here), "local" (submitit subprocesses) or "slurm" (``slurm``: a
    ``SlurmOptions``; ``cluster="debug"`` runs the jobs in process, to check the plumbing)."""
    lams = np.atleast_1d(np.asarray(lams, dtype=np.float64))
    if lams.ndim != 1 or lams.size == 0 or not np.isfinite(lams).all() or (lams < 0).any():
        raise ValueError(f"lams must be a non-empty list of finite values >= 0, got lams={lams.tolist()!r}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if executor != "inline" and out is None:
        raise ValueError(f"executor={executor!r} needs out (the directory its jobs write to)")
    run_kw = {"device": device, "compile": compile, "save_model": save_model, "progress": progress}
    split = TokenSplit(token_file, cfg.context, heldout_fraction)
    if executor == "inline":
        runs = _run_part(token_file.path, heldout_fraction, lams, seeds, cfg, out, run_kw)
    else:
        folder = Path(out) / "jobs" / ("%j" if executor == "slurm" else "")
        ex = make_executor(executor, folder, slurm=slurm, cluster=cluster)
        parts = np.array_split(lams, min(as_positive_int(lam_jobs, "lam_jobs"), lams.size))
        jobs = [ex.submit(LMSweepJob(), token_file.path, heldout_fraction, part.tolist(), seeds, cfg, out, run_kw)
                for part in parts]
        try:
            for job in jobs:
                job.result()  # raises the job's error, with its log
        except BaseException:  # Ctrl-C or a failed job: no job keeps writing under out; a rerun resumes
            for job in jobs:
                if not job.done():
                    job.cancel(check=False)
            raise
        runs = _run_part(token_file.path, heldout_fraction, lams, seeds, cfg, out, {**run_kw, "progress": False})
    def stack(name):
        return np.stack([np.stack([getattr(r, name) for r in row]) for row in runs])
    return LMSweepResult(lams, seeds, split.token_probs, cfg.tokens_per_step, stack("heldout_sums"),
                         stack("heldout_counts"), stack("train_sums"), stack("train_counts"),
                         [[r.curve for r in row] for row in runs], runs[0][0].decay_table)
