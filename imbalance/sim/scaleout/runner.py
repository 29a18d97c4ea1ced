"""``SweepRunner``: the executor and the root directory a report's sweeps run and are kept in."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..._validate import as_choice, as_positive_int
from .executors import EXECUTORS, SlurmOptions, make_executor
from .jobs import PendingSweep, submit_sweep
from .keys import sweep_key

__all__ = ["SweepRunner"]

_MARKER = ".imbalance-sweeps"


class SweepRunner:
    """Where the sweeps of a report run and are kept.

    ``executor``: "inline" (in this process), "local" (submitit subprocesses) or "slurm";
    ``root``: each named sweep is stored under ``root/<name>-<sweep_key[:12]>`` (None: not
    stored, inline only); ``lam_jobs``: jobs per sweep along λ; ``fresh``: delete what an
    earlier run stored under ``root`` first; ``callback``: passed to inline sweeps (tests).
    ``log`` lists (directory name, status) per sweep submitted.

    ``device="auto"`` in a sweep is resolved where its job runs (a local job sees this process's
    GPUs; a Slurm job gets ``SlurmOptions.gpus``, one by default when ``device="cuda"``).

    Local jobs run one sweep at a time (``submit`` returns once its jobs have ended): torch
    processes side by side oversubscribe a small machine's cores; the ``lam_jobs`` parts of
    one sweep do run side by side. Slurm jobs run asynchronously; ``cancel`` stops them all.
    """

    def __init__(self, executor: str = "inline", root=None, *, lam_jobs: int = 1, slurm: SlurmOptions | None = None,
                 fresh: bool = False, callback=None, cluster: str = "slurm", device: str = "auto"):
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
                                                                          cluster=cluster, device=device)

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
