"""One sweep as submitit jobs: a job per contiguous λ part, its pending handle, and the parts
concatenated back into one result."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import submitit
import torch
from submitit.helpers import Checkpointable

from ..._progress import progress_bar
from ..._validate import as_positive_int
from ..settings import check_lams
from ..sweep import SweepResult, sweep
from .keys import sweep_key
from .locking import locked

__all__ = ["concat_sweeps", "SweepJob", "PendingSweep", "submit_sweep", "last_step"]


def concat_sweeps(parts: list[SweepResult]) -> SweepResult:
    """Parts of one sweep over consecutive λ ranges (same seeds, steps, task), as one result."""
    if not parts:
        raise ValueError("parts must hold at least one SweepResult")
    if len(parts) == 1:
        return parts[0]
    a = parts[0]
    for p in parts[1:]:
        if p.seeds != a.seeds or not np.array_equal(p.curve_steps, a.curve_steps) or p.optimizer != a.optimizer:
            raise ValueError("parts must come from one sweep (same seeds, steps and optimizer)")

    def cat(name, axis):
        vals = [getattr(p, name) for p in parts]
        return None if vals[0] is None else np.concatenate(vals, axis=axis)

    def cat_params(name):
        vals = [getattr(p, name) for p in parts]
        return None if vals[0] is None else {k: torch.cat([v[k] for v in vals]) for k in vals[0]}

    return SweepResult(
        lams=cat("lams", 0), seeds=a.seeds, token_probs=a.token_probs, loss_per_token=cat("loss_per_token", 0),
        heldout_loss_per_token=cat("heldout_loss_per_token", 0), loss_per_token_avg=cat("loss_per_token_avg", 0),
        heldout_loss_per_token_avg=cat("heldout_loss_per_token_avg", 0), curve_steps=a.curve_steps,
        curve_loss_per_token=cat("curve_loss_per_token", 1), curve_heldout=cat("curve_heldout", 1),
        train_loss=cat("train_loss", 1), params=cat_params("params"), params_avg=cat_params("params_avg"),
        optimizer=a.optimizer, batch_size=a.batch_size, lr=a.lr)


def _run_part(task, lams, out, kwargs) -> SweepResult:
    with locked(out):
        return sweep(task, lams, out=out, **kwargs)


class SweepJob(Checkpointable):
    """One part of a sweep as a submitit job. On preemption or timeout submitit calls
    ``checkpoint``, which requeues the same call; the sweep resumes from ``out``."""

    def __call__(self, task, lams, out, kwargs) -> SweepResult:
        resume = out is not None and (Path(out) / "checkpoint.pt").exists()
        print(f"imbalance sweep: λ = {list(map(float, lams))}, {kwargs.get('steps')} steps, out = {out}: "
              + (f"resuming from its checkpoint (results stored up to step {last_step(out)})" if resume
                 else "starting"), flush=True)
        return _run_part(task, lams, out, kwargs)


def last_step(out) -> int | None:
    """The step of the last evaluation stored in ``out`` (None: nothing stored yet)."""
    path = Path(out) / "results.jsonl"
    if not (Path(out) / "checkpoint.pt").exists() or not path.exists():
        return None
    last = None
    for line in path.read_text().splitlines():
        try:
            last = json.loads(line).get("step", last)
        except (json.JSONDecodeError, AttributeError):
            continue
    return last


def _finished(out, steps) -> bool:
    return last_step(out) == steps


class PendingSweep:
    """A sweep in flight: ``result()`` waits for its jobs and concatenates their parts.
    ``status``: "read back" (every part was on disk, finished), "resumed" (a part had a
    checkpoint), "trained" (from scratch) or "in process" (no storage)."""

    def __init__(self, parts, status, local, outs=(), steps=0, name="sweep"):
        self._parts = parts  # SweepResult or submitit Job, one per λ part
        self._outs = [o for o, p in zip(outs, parts) if not isinstance(p, SweepResult) and o is not None]
        self._steps, self._name = steps, name
        self.status = status
        self._local = local
        self._poll_s = 0.05 if local else 2.0
        self._cancelled = []
        self.jobs = [p for p in parts if not isinstance(p, SweepResult)]

    def done(self) -> bool:
        return all(j.done() for j in self.jobs)

    def cancel(self, wait_s: float = 10.0) -> None:
        """Cancel the jobs that have not ended, once (a second SIGINT would stop a local job's
        controller before it stops its task), and give them ``wait_s`` seconds to end."""
        for j in self.jobs:
            if j not in self._cancelled and not j.done():
                j.cancel(check=False)
                self._cancelled.append(j)
        t0 = time.time()
        while self._local and time.time() - t0 < wait_s and not self.done():
            time.sleep(self._poll_s)

    def wait(self) -> None:
        """Until every job has ended; interrupted (Ctrl-C, an error), it cancels them first. On a
        terminal a bar shows the steps the jobs have stored so far and the time spent."""
        bar = progress_bar(total=self._steps * len(self._outs), desc=f"{self._name} ({len(self.jobs)} jobs)",
                           enabled=bool(self.jobs and self._outs))
        try:
            while not self.done():
                time.sleep(self._poll_s)
                if not bar.disable:
                    bar.n = sum(last_step(o) or 0 for o in self._outs)
                    bar.refresh()
        except BaseException:
            self.cancel()
            raise
        finally:
            bar.close()

    def result(self) -> SweepResult:
        self.wait()
        return concat_sweeps([p if isinstance(p, SweepResult) else p.result() for p in self._parts])


def submit_sweep(task, lams, *, executor=None, out=None, lam_jobs: int = 1, **sweep_kw) -> PendingSweep:
    """Send ``sweep(task, lams, **sweep_kw)`` through a submitit ``executor`` (None: run it
    here) as ``min(lam_jobs, len(lams))`` jobs over contiguous λ ranges.

    ``out``: the sweep's directory (part i of n in ``out/part{i}of{n}`` when n > 1); with an
    executor and no ``out``, ``<executor folder>/sweeps/<sweep_key>``. A part already
    finished there is read back in process; any other part resumes from its checkpoint.
    ``.result()`` equals ``sweep(task, lams, **sweep_kw)`` to the bit.
    """
    lam_arr = check_lams(lams)
    n = min(as_positive_int(lam_jobs, "lam_jobs"), lam_arr.size)
    steps = as_positive_int(sweep_kw.get("steps"), "steps")
    if executor is not None and not hasattr(executor, "submit"):
        raise ValueError(f"executor must be a submitit executor or None, got executor={executor!r}")
    if out is None and executor is not None:
        root = submitit.core.utils.JobPaths.get_first_id_independent_folder(executor.folder)
        out = root / "sweeps" / sweep_key(task, lam_arr, **sweep_kw)[:16]
    outs = [None] * n if out is None else [Path(out)] if n == 1 else [Path(out) / f"part{i}of{n}" for i in range(n)]
    chunks = np.array_split(lam_arr, n)
    parts, states = [], []
    for chunk, part_out in zip(chunks, outs):
        if part_out is not None and _finished(part_out, steps):
            parts.append(_run_part(task, chunk, part_out, sweep_kw))
            states.append("read back")
            continue
        states.append("trained" if part_out is None or not (part_out / "checkpoint.pt").exists() else "resumed")
        if executor is None:
            parts.append(_run_part(task, chunk, part_out, sweep_kw))
        else:
            parts.append(executor.submit(SweepJob(), task, chunk, part_out, sweep_kw))
    status = ("in process" if out is None else "read back" if all(s == "read back" for s in states)
              else "resumed" if "resumed" in states or "read back" in states else "trained")
    return PendingSweep(parts, status, local=isinstance(executor, submitit.LocalExecutor), outs=outs, steps=steps,
                        name=Path(out).name if out is not None else "sweep")
