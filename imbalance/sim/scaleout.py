"""Scale-out: a sweep sent through submitit — local subprocesses or a slurm cluster.

``submit_sweep`` splits the λ grid into contiguous parts, runs each part as one job
(``sweep(task, part, out=...)``) and concatenates the parts along λ: the result equals the
in-process ``sweep(task, lams)`` to the bit, because each seed's generator draws the same
initialisation and batches whatever λ it is stacked with. Each job stores its sweep under
``out`` (append-only results and checkpoints), so a preempted or timed-out job is requeued
(``submitit.helpers.Checkpointable``) and resumes where it stopped, and a part that already
finished is read back in process instead of being resubmitted.

``SweepRunner`` is what ``imbalance reproduce`` uses: one executor and one root directory,
each named sweep stored under ``root/<name>-<hash of its configuration>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import submitit
import torch
from submitit.helpers import Checkpointable

from .._validate import as_choice, as_positive, as_positive_int
from .devices import resolve_device
from .sweep import SweepResult, _check_lams, _digest, sweep

__all__ = ["EXECUTORS", "SlurmOptions", "make_executor", "submit_sweep", "PendingSweep", "SweepJob", "concat_sweeps",
           "sweep_key", "SweepRunner"]

EXECUTORS = ("inline", "local", "slurm")
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory that holds imbalance/
_MARKER = ".imbalance-sweeps"


@dataclass(frozen=True)
class SlurmOptions:
    """sbatch settings of each sweep job. ``time_min`` is the wall-clock limit in minutes (a job
    that reaches it is requeued and resumes from its checkpoint); ``params`` are extra sbatch
    flags, each written as ``#SBATCH --key=value`` (they override the named ones)."""

    partition: str | None = None
    time_min: int = 60
    gpus: int = 0
    cpus: int | None = None
    mem_gb: float | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        as_positive_int(self.time_min, "time_min")
        as_positive_int(self.gpus, "gpus", minimum=0)
        if self.cpus is not None:
            as_positive_int(self.cpus, "cpus")
        if self.mem_gb is not None:
            as_positive(self.mem_gb, "mem_gb")
        if self.partition is not None and (not isinstance(self.partition, str) or not self.partition):
            raise ValueError(f"partition must be a non-empty string, got partition={self.partition!r}")
        for k in self.params:
            if not isinstance(k, str) or not k or k.startswith("-") or "=" in k:
                raise ValueError(f"params keys must be sbatch option names without dashes, got {k!r}")


def _job_python() -> str:
    """The job's python command: this interpreter, importing the same checkout as the
    submitter, installed or not (``env`` execs python, so a cancel reaches it)."""
    path = os.pathsep.join([str(_PACKAGE_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return shlex.join(["env", f"PYTHONPATH={path}", sys.executable])


def make_executor(executor: str, folder, *, slurm: SlurmOptions | None = None, cluster: str = "slurm"):
    """A submitit executor writing its job files under ``folder``; None for ``"inline"``.

    ``"local"``: ``submitit.LocalExecutor`` (one subprocess per job on this machine, no time
    limit); ``"slurm"``: ``submitit.AutoExecutor(folder, cluster=cluster)`` with ``slurm``'s
    settings (``cluster="debug"`` runs the jobs in process, for checking the plumbing).
    """
    executor = as_choice(executor, "executor", set(EXECUTORS))
    if executor == "inline":
        return None
    if executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder), python=_job_python())
        ex.update_parameters(timeout_min=7 * 24 * 60)
        return ex
    slurm = slurm if slurm is not None else SlurmOptions()
    if not isinstance(slurm, SlurmOptions):
        raise ValueError(f"slurm must be a SlurmOptions, got slurm={slurm!r}")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_python=_job_python())
    ex.update_parameters(name="imbalance-sweep", timeout_min=int(slurm.time_min), gpus_per_node=int(slurm.gpus),
                         cpus_per_task=slurm.cpus, mem_gb=slurm.mem_gb, slurm_partition=slurm.partition,
                         slurm_additional_parameters=dict(slurm.params) or None)
    return ex


def _jsonable(value):
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        arr = value.detach().cpu().numpy() if torch.is_tensor(value) else value
        return {"sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(), "dtype": str(arr.dtype),
                "shape": list(arr.shape)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, torch.dtype):
        return str(value)
    if hasattr(value, "__dict__"):  # a model: its class and its plain settings
        return {"class": type(value).__name__, **{k: _jsonable(v) for k, v in sorted(vars(value).items())
                                                   if isinstance(v, (bool, int, float, str, tuple, list))}}
    return repr(value)


_NOT_CONFIG = {"callback", "progress"}


def sweep_key(task, lams, **sweep_kw) -> str:
    """A SHA-256 of everything that determines a sweep's numbers: the task's data, λ, the
    model's settings and every ``sweep`` argument but ``callback``/``progress``."""
    cfg = {"task": type(task).__name__, "task_digest": _digest(task), "lams": _check_lams(lams).tolist(),
           **{k: _jsonable(v) for k, v in sorted(sweep_kw.items()) if k not in _NOT_CONFIG}}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()


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


@contextlib.contextmanager
def _locked(out):
    """Hold an exclusive lock on ``out`` (a job left over from a killed run finishes first);
    where the file system has no locks, go on without."""
    if out is None:
        yield
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / ".lock", "a") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        yield


def _run_part(task, lams, out, kwargs) -> SweepResult:
    with _locked(out):
        return sweep(task, lams, out=out, **kwargs)


class SweepJob(Checkpointable):
    """One part of a sweep as a submitit job. On preemption or timeout submitit calls
    ``checkpoint``, which requeues the same call; the sweep resumes from ``out``."""

    def __call__(self, task, lams, out, kwargs) -> SweepResult:
        resume = out is not None and (Path(out) / "checkpoint.pt").exists()
        print(f"imbalance sweep: λ = {list(map(float, lams))}, {kwargs.get('steps')} steps, out = {out}: "
              + (f"resuming from its checkpoint (results stored up to step {_last_step(out)})" if resume
                 else "starting"), flush=True)
        return _run_part(task, lams, out, kwargs)


def _last_step(out) -> int | None:
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
    return _last_step(out) == steps


class PendingSweep:
    """A sweep in flight: ``result()`` waits for its jobs and concatenates their parts.
    ``status``: "read back" (every part was on disk, finished), "resumed" (a part had a
    checkpoint), "trained" (from scratch) or "in process" (no storage)."""

    def __init__(self, parts, status, local):
        self._parts = parts  # SweepResult or submitit Job, one per λ part
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
        """Until every job has ended; interrupted (Ctrl-C, an error), it cancels them first."""
        try:
            while not self.done():
                time.sleep(self._poll_s)
        except BaseException:
            self.cancel()
            raise

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
    lam_arr = _check_lams(lams)
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
    return PendingSweep(parts, status, local=isinstance(executor, submitit.LocalExecutor))


class SweepRunner:
    """Where the sweeps of a report run and are kept.

    ``executor``: "inline" (in this process), "local" (submitit subprocesses) or "slurm";
    ``root``: each named sweep is stored under ``root/<name>-<sweep_key[:12]>`` (None: not
    stored, inline only); ``lam_jobs``: jobs per sweep along λ; ``fresh``: delete what an
    earlier run stored under ``root`` first; ``callback``: passed to inline sweeps (tests).
    ``log`` lists (directory name, status) per sweep submitted.

    Local jobs run one sweep at a time (``submit`` returns once its jobs have ended): torch
    processes side by side oversubscribe a small machine's cores; the ``lam_jobs`` parts of
    one sweep do run side by side. Slurm jobs run asynchronously; ``cancel`` stops them all.
    """

    def __init__(self, executor: str = "inline", root=None, *, lam_jobs: int = 1, slurm: SlurmOptions | None = None,
                 fresh: bool = False, callback=None, cluster: str = "slurm"):
        self.kind = as_choice(executor, "executor", set(EXECUTORS))
        self.lam_jobs = as_positive_int(lam_jobs, "lam_jobs")
        self.root = None if root is None else Path(root)
        if self.root is None and self.kind != "inline":
            raise ValueError(f"executor={self.kind!r} needs a root directory for its jobs, got root=None")
        if callback is not None and self.kind != "inline":
            raise ValueError(f"callback runs only with executor='inline', got executor={self.kind!r}")
        self.callback = callback
        self.log: list[tuple[str, str]] = []
        self._pending: list[PendingSweep] = []
        if self.root is not None:
            if fresh:
                self.clear()
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / _MARKER).touch()
        # local job files flat in jobs/ (the controller would create a literal "%j" folder); slurm: jobs/<id>/
        folder = None if self.root is None else self.root / "jobs" / ("%j" if self.kind == "slurm" else "")
        self.executor = None if self.kind == "inline" else make_executor(self.kind, folder, slurm=slurm,
                                                                          cluster=cluster)

    def clear(self) -> None:
        """Delete ``root`` if it is a sweep store written here (it holds the marker file)."""
        if self.root is None or not self.root.exists():
            return
        if not (self.root / _MARKER).exists():
            raise ValueError(f"root={str(self.root)!r} was not written by a SweepRunner (no {_MARKER} file); "
                             "refusing to delete it")
        shutil.rmtree(self.root)

    def submit(self, name: str, task, lams, **sweep_kw) -> PendingSweep:
        """``sweep(task, lams, **sweep_kw)`` through this runner's executor, stored by name."""
        if not isinstance(name, str) or not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"name must be a plain directory name, got name={name!r}")
        if self.kind != "slurm":  # jobs run on this machine: pin "auto" to what it means here
            sweep_kw["device"] = str(resolve_device(sweep_kw.get("device", "auto")))
        if self.callback is not None:
            sweep_kw["callback"] = self.callback
        out = None if self.root is None else self.root / f"{name}-{sweep_key(task, lams, **sweep_kw)[:12]}"
        pending = submit_sweep(task, lams, executor=self.executor, out=out, lam_jobs=self.lam_jobs, **sweep_kw)
        self.log.append((name if out is None else out.name, pending.status))
        self._pending.append(pending)
        if self.kind == "local":
            pending.wait()
        return pending

    def cancel(self) -> None:
        """Cancel every job of this runner that has not ended (its checkpoints stay)."""
        for p in self._pending:
            p.cancel()

    def summary(self) -> str:
        counts = {s: sum(1 for _, st in self.log if st == s) for s in ("trained", "resumed", "read back", "in process")}
        where = f" in {self.root}" if self.root is not None else ""
        return (f"{len(self.log)} sweeps via {self.kind}{where}: "
                + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
