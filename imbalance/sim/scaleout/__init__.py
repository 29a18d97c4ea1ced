"""Scale-out: a sweep sent through submitit — local subprocesses or a slurm cluster.

``submit_sweep`` splits the λ grid into contiguous parts, runs each part as one job
(``sweep(task, part, out=...)``) and concatenates the parts along λ: the result equals the
in-process ``sweep(task, lams)`` to the bit, because each seed's generator draws the same
initialisation and batches whatever λ it is stacked with. Each job stores its sweep under
``out`` (append-only results and checkpoints), so a preempted or timed-out job is requeued
(``submitit.helpers.Checkpointable``) and resumes where it stopped, and a part that already
finished is read back in process instead of being resubmitted.

``SweepRunner`` is what ``imbalance reproduce`` uses: one executor and one root directory,
each named sweep stored under ``root/<name>-<sweep_key[:12]>``.

Modules: ``executors`` (Slurm options, local and Slurm executors, the GPUs a job gets),
``keys`` (``sweep_key``: the sweep's fingerprint, ``imbalance.sim.identity``), ``locking``,
``jobs`` (one job, a pending sweep, ``submit_sweep``, ``concat_sweeps``), ``runner``.
"""

from .executors import EXECUTORS, SlurmOptions, make_executor
from .jobs import PendingSweep, SweepJob, concat_sweeps, submit_sweep
from .keys import sweep_key
from .runner import SweepRunner

__all__ = ["EXECUTORS", "SlurmOptions", "make_executor", "submit_sweep", "PendingSweep", "SweepJob", "concat_sweeps",
           "sweep_key", "SweepRunner"]
