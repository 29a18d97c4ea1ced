"""Where a sweep job runs: submitit's local executor (subprocesses on this machine, with the GPUs
this process sees) or Slurm (sbatch, with the GPUs the device asks for)."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from ..._validate import as_choice, as_positive, as_positive_int
from ..devices import visible_gpus

__all__ = ["EXECUTORS", "SlurmOptions", "make_executor", "local_gpu_parameters", "slurm_gpus"]

EXECUTORS = ("inline", "local", "slurm")
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the directory that holds imbalance/


@dataclass(frozen=True)
class SlurmOptions:
    """sbatch settings of each sweep job. ``time_min`` is the wall-clock limit in minutes (a job
    that reaches it is requeued and resumes from its checkpoint); ``gpus`` per job (None: one when
    the sweeps ask for ``device="cuda"``, else none); ``params`` are extra sbatch flags, each
    written as ``#SBATCH --key=value`` (they override the named ones)."""

    partition: str | None = None
    time_min: int = 60
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: float | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        as_positive_int(self.time_min, "time_min")
        if self.gpus is not None:
            as_positive_int(self.gpus, "gpus", minimum=0)
        if self.cpus is not None:
            as_positive_int(self.cpus, "cpus")
        if self.mem_gb is not None:
            as_positive(self.mem_gb, "mem_gb")
        if self.partition is not None and (not isinstance(self.partition, str) or not self.partition):
            raise ValueError(f"partition must be a non-empty string, got partition={self.partition!r}")
        if not isinstance(self.params, dict):
            raise ValueError(f"params must be a dict of sbatch options, got params={self.params!r:.80}")
        for k in self.params:
            if not isinstance(k, str) or not k or k.startswith("-") or "=" in k:
                raise ValueError(f"params keys must be sbatch option names without dashes, got {k!r}")


def slurm_gpus(slurm: SlurmOptions, device: str = "auto") -> int:
    """GPUs per Slurm job: ``slurm.gpus``, or 1 when the sweeps ask for CUDA and it is unset.
    ``device="cuda"`` with ``gpus=0`` is refused (the job would fail on a node without a GPU)."""
    cuda = str(device).startswith("cuda")
    if slurm.gpus is None:
        return 1 if cuda else 0
    if cuda and slurm.gpus == 0:
        raise ValueError(f"device={device!r} needs a GPU per Slurm job, got gpus=0 (--slurm-gpus 0)")
    return int(slurm.gpus)


def local_gpu_parameters() -> dict:
    """submitit ``LocalExecutor`` parameters that give a job the GPUs this process sees (by default
    submitit starts every local job with ``CUDA_VISIBLE_DEVICES=""``, hiding them)."""
    n, env = visible_gpus()
    if env is None:
        return {"gpus_per_node": n}
    ids = [s.strip() for s in env.split(",") if s.strip()]
    if all(s.isdigit() for s in ids):
        return {"gpus_per_node": len(ids), "visible_gpus": tuple(int(s) for s in ids)}
    # GPU UUIDs or MIG names: submitit takes integers only, so the job's shell sets the same list
    return {"gpus_per_node": 0, "setup": [f"export CUDA_VISIBLE_DEVICES={shlex.quote(env)}"]}


def _job_python(local: bool = False) -> str:
    """The job's python command: this interpreter, importing the same checkout as the
    submitter, installed or not (``env`` execs python, so a cancel reaches it).

    ``local``: the jobs run side by side on this machine's cores, so each gets one thread for
    torch and BLAS (``OMP_NUM_THREADS=1``) unless the environment sets ``OMP_NUM_THREADS``: jobs
    with a thread per core each would oversubscribe the cores, and threads that wait at a
    barrier for a descheduled peer burn the time the other jobs need.
    """
    path = os.pathsep.join([str(_PACKAGE_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    threads = [f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS') or 1}"] if local else []
    return shlex.join(["env", f"PYTHONPATH={path}", *threads, sys.executable])


@contextlib.contextmanager
def _children_answer_sigint():
    """Inside the block, a child process starts with SIGINT at its default action.

    A process that ignores SIGINT (started with ``cmd &`` by a non-interactive shell, as scripts
    and CI runners do) hands the ignoring on to every child; submitit cancels a local job by
    sending SIGINT to the job's controller, which would then never end its task, and the job would
    go on writing into its directory. A signal that has a handler is reset to its default in an
    exec'd child, so for the moment of the start a no-op handler stands in for the ignoring (the
    submitting process still ignores SIGINT). Only the main thread can change a handler: elsewhere
    the block does nothing.
    """
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class _LocalExecutor(submitit.LocalExecutor):
    """``submitit.LocalExecutor`` whose job controllers start with SIGINT at its default, so that a
    cancel stops the job whatever the submitting process does with SIGINT."""

    def _submit_command(self, command: str):
        with _children_answer_sigint():
            return super()._submit_command(command)


def make_executor(executor: str, folder, *, slurm: SlurmOptions | None = None, cluster: str = "slurm",
                  device: str = "auto"):
    """A submitit executor writing its job files under ``folder``; None for ``"inline"``.

    ``"local"``: ``submitit.LocalExecutor`` (one subprocess per job on this machine, no time
    limit, the GPUs this process sees, one CPU thread unless ``OMP_NUM_THREADS`` says otherwise);
    ``"slurm"``: ``submitit.AutoExecutor(folder, cluster=cluster)`` with ``slurm``'s settings
    and ``slurm_gpus(slurm, device)`` GPUs per job (``cluster="debug"`` runs the jobs in
    process, for checking the plumbing).
    """
    executor = as_choice(executor, "executor", set(EXECUTORS))
    if executor == "inline":
        return None
    if executor == "local":
        ex = _LocalExecutor(folder=str(folder), python=_job_python(local=True))
        ex.update_parameters(timeout_min=7 * 24 * 60, **local_gpu_parameters())
        return ex
    slurm = slurm if slurm is not None else SlurmOptions()
    if not isinstance(slurm, SlurmOptions):
        raise ValueError(f"slurm must be a SlurmOptions, got slurm={slurm!r}")
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster, slurm_python=_job_python())
    ex.update_parameters(name="imbalance-sweep", timeout_min=int(slurm.time_min),
                         gpus_per_node=slurm_gpus(slurm, device), cpus_per_task=slurm.cpus, mem_gb=slurm.mem_gb,
                         slurm_partition=slurm.partition, slurm_additional_parameters=dict(slurm.params) or None)
    return ex
