"""Scale-out through submitit: local jobs and λ-split jobs give the in-process sweep to the
bit, a preempted job resumes, finished sweeps are read back, slurm settings reach sbatch."""

import os
import pickle
import signal
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import submitit
import torch

from imbalance.sim import BigramTable, BigramTask, TokenStreamTask, Transformer, sweep
from imbalance.sim.scaleout import (
    SlurmOptions,
    SweepJob,
    SweepRunner,
    concat_sweeps,
    make_executor,
    submit_sweep,
    sweep_key,
)

TASK = BigramTask.stochastic_zipf(12, 1.1, 0.6)
LAMS = [0.01, 0.1, 0.3]


def _kw(**kw):
    base = dict(model=BigramTable(), optimizer="adamw", steps=60, batch_size=16, lr=0.05, seeds=(0, 3),
                eval_every=10, average_last=7, progress=False)
    base.update(kw)
    return base


def _same(a, b):
    for f in ("lams", "loss_per_token", "loss_per_token_avg", "heldout_loss_per_token", "curve_loss_per_token",
              "curve_heldout", "train_loss", "curve_steps"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None and y is None) or np.array_equal(x, y, equal_nan=True), f
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k
    assert a.seeds == b.seeds and a.optimizer == b.optimizer


def test_local_jobs_split_along_lambda_equal_the_in_process_sweep(tmp_path):
    ref = sweep(TASK, LAMS, **_kw())
    ex = make_executor("local", tmp_path / "jobs")
    pending = submit_sweep(TASK, LAMS, executor=ex, lam_jobs=2, **_kw())
    assert len(pending.jobs) == 2 and all(type(j).__name__ == "LocalJob" for j in pending.jobs)
    _same(pending.result(), ref)
    stored = sorted(p.name for p in (tmp_path / "jobs" / "sweeps").iterdir())
    assert stored == [sweep_key(TASK, LAMS, **_kw())[:16]]
    # the λ parts are where the jobs wrote them; a resubmission reads them back, no job
    again = submit_sweep(TASK, LAMS, executor=ex, lam_jobs=2, **_kw())
    assert again.status == "read back" and again.jobs == []
    _same(again.result(), ref)


def test_lambda_split_in_process_equals_unsplit_for_a_transformer():
    ids = np.random.default_rng(0).integers(0, 20, 600)
    task = TokenStreamTask(ids, 20, seq_len=8)
    kw = dict(model=Transformer(n_layer=1, n_head=2, d_model=8), optimizer="adamw", steps=12, batch_size=4, lr=1e-2,
              seeds=(0, 1), dtype=torch.float32, progress=False, eval_every=6)
    ref = sweep(task, [0.0, 0.1, 1.0], **kw)
    split = submit_sweep(task, [0.0, 0.1, 1.0], lam_jobs=5, **kw)  # capped at one λ per part
    assert split.status == "in process"
    _same(split.result(), ref)
    with pytest.raises(ValueError, match="parts"):
        concat_sweeps([])


def _children(pid):
    return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _child_pid(pid, timeout=30.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        kids = _children(pid)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise AssertionError("the local job never started its task")


def _wait_for_checkpoint(out, job):
    """Until the job's first checkpoint; its start (a fresh interpreter importing torch) can take
    minutes on a loaded machine, and the wait ends as soon as the file is there."""
    t0 = time.time()
    while not (out / "checkpoint.pt").exists():
        assert time.time() - t0 < 300 and job.state == "RUNNING", job.stderr()
        time.sleep(0.005)


def test_preempted_local_job_is_requeued_and_resumes(tmp_path):
    kw = _kw(steps=8000, eval_every=500)
    ref = sweep(TASK, LAMS[:2], **kw)
    pending = submit_sweep(TASK, LAMS[:2], executor=make_executor("local", tmp_path / "jobs"), out=tmp_path / "s",
                           **kw)
    (job,) = pending.jobs
    _wait_for_checkpoint(tmp_path / "s", job)
    os.kill(_child_pid(job._process.pid), signal.SIGUSR2)  # what slurm sends before preempting
    res = pending.result()
    log = job.stdout()
    assert "preempted" in (job.stderr() or "") + log
    assert "resuming from its checkpoint" in log, log  # the requeued job went on from there
    _same(res, ref)


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_cancel_stops_a_local_job_and_its_task(tmp_path):
    """Submitted by a process that ignores SIGINT (``cmd &`` from a script or a CI runner), the
    hardest case: submitit cancels a local job with SIGINT, and the ignoring would pass to the
    job's controller. The executor starts the controller with SIGINT at its default, which is
    also what it inherits from a process that handles SIGINT, so this case covers both."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _cancel_a_local_job(tmp_path)
    finally:
        signal.signal(signal.SIGINT, old)


def _cancel_a_local_job(tmp_path):
    pending = submit_sweep(TASK, LAMS[:2], executor=make_executor("local", tmp_path / "jobs"), out=tmp_path / "s",
                           **_kw(steps=10**6, eval_every=500))
    (job,) = pending.jobs
    task = None
    try:
        _wait_for_checkpoint(tmp_path / "s", job)
        task = _child_pid(job._process.pid)
        pending.cancel(wait_s=60.0)  # the claim is that it stops, not how fast (a loaded machine is slow)
        pending.cancel()  # a second SIGINT used to stop the controller before it had stopped its task
        assert job.done()
        t0 = time.time()
        while _alive(task) and time.time() - t0 < 10:
            time.sleep(0.05)
        assert not _alive(task)
    finally:  # a failed cancel must not leave a job of a million steps running
        controller = job._process.pid
        kids = _children(controller) if _alive(controller) else []
        for pid in {p for p in (task, *kids, controller) if p is not None}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_local_jobs_get_one_thread_unless_the_environment_says_otherwise(tmp_path, monkeypatch):
    """Local jobs run side by side: one torch/BLAS thread each, or what OMP_NUM_THREADS says."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert "OMP_NUM_THREADS=1 " in make_executor("local", tmp_path).python
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert "OMP_NUM_THREADS=3 " in make_executor("local", tmp_path).python


def test_sweep_job_checkpoint_resubmits_the_same_call(tmp_path):
    job = SweepJob()
    delayed = job.checkpoint(TASK, [0.1], tmp_path, _kw())
    assert delayed.function is job and delayed.args[1:3] == ([0.1], tmp_path)
    _same(delayed.function(*delayed.args, **delayed.kwargs), sweep(TASK, [0.1], **_kw()))


def test_bad_executor_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="executor"):
        make_executor("pbs", tmp_path)
    with pytest.raises(ValueError, match="executor"):
        SweepRunner("Kubernetes", tmp_path)
    with pytest.raises(ValueError, match="executor"):
        submit_sweep(TASK, LAMS, executor="local", **_kw())
    with pytest.raises(ValueError, match="lam_jobs"):
        submit_sweep(TASK, LAMS, lam_jobs=0, **_kw())
    with pytest.raises(ValueError, match="root"):
        SweepRunner("local")
    with pytest.raises(ValueError, match="callback"):
        SweepRunner("local", tmp_path, callback=print)
    with pytest.raises(ValueError, match="time_min"):
        SlurmOptions(time_min=0)
    with pytest.raises(ValueError, match="params"):
        SlurmOptions(params={"--account": "x"})
    with pytest.raises(ValueError, match="name"):
        SweepRunner().submit("../x", TASK, LAMS, **_kw())


def test_slurm_debug_cluster_runs_the_runner_path(tmp_path):
    # cluster="debug": AutoExecutor runs each job in this process when its result is asked for
    runner = SweepRunner("slurm", tmp_path, slurm=SlurmOptions(partition="gpu", time_min=5), cluster="debug")
    assert runner.executor.cluster == "debug"
    pending = runner.submit("bigram", TASK, LAMS, **_kw())
    assert pending.status == "trained" and len(pending.jobs) == 1
    _same(pending.result(), sweep(TASK, LAMS, **_kw()))
    assert runner.log == [(f"bigram-{sweep_key(TASK, LAMS, **_kw())[:12]}", "trained")]


def _fake(bin_dir: Path, name: str, body: str):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_slurm_settings_reach_the_sbatch_script(tmp_path, monkeypatch):
    """No cluster here: fake `srun` (submitit looks for it) and `sbatch` (records the script)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "submitted"
    record.mkdir()
    _fake(bin_dir, "srun", "exit 0\n")
    _fake(bin_dir, "sbatch",
          f'n=$(ls {record} | wc -l); cp "$1" {record}/script$n.sh; echo "Submitted batch job 4$n"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    opts = SlurmOptions(partition="gpu", time_min=90, gpus=1, cpus=8, mem_gb=32,
                        params={"account": "abc", "qos": "high"})
    ex = make_executor("slurm", tmp_path / "jobs" / "%j", slurm=opts)
    assert isinstance(ex, submitit.AutoExecutor) and ex.cluster == "slurm"
    pending = submit_sweep(TASK, LAMS, executor=ex, out=tmp_path / "s", lam_jobs=2, **_kw())
    assert [j.job_id for j in pending.jobs] == ["40", "41"]
    scripts = sorted(record.iterdir())
    assert len(scripts) == 2
    text = scripts[0].read_text()
    for flag in ("--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB",
                 "--account=abc", "--qos=high", "--job-name=imbalance-sweep", "--signal=USR2@"):
        assert f"#SBATCH {flag}" in text, flag
    assert f"PYTHONPATH={Path(__file__).resolve().parents[2]}" in text  # the job imports this checkout
    # each job's pickled call: SweepJob on its λ part, stored in its own part directory
    calls = []
    for j in pending.jobs:
        with open(j.paths.submitted_pickle, "rb") as fh:
            calls.append(pickle.load(fh))
    assert all(isinstance(c.function, SweepJob) for c in calls)
    assert [list(c.args[1]) for c in calls] == [LAMS[:2], LAMS[2:]]
    assert [c.args[2] for c in calls] == [tmp_path / "s" / "part0of2", tmp_path / "s" / "part1of2"]
    assert calls[0].args[3]["steps"] == 60


def test_runner_fresh_deletes_only_its_own_store(tmp_path):
    root = tmp_path / "sweeps"
    SweepRunner("inline", root).submit("a", TASK, LAMS, **_kw()).result()
    (stored,) = [p for p in root.iterdir() if p.is_dir()]
    assert SweepRunner("inline", root).submit("a", TASK, LAMS, **_kw()).status == "read back"
    fresh = SweepRunner("inline", root, fresh=True)
    assert not stored.exists()
    assert fresh.submit("a", TASK, LAMS, **_kw()).status == "trained"
    other = tmp_path / "mine"
    (other / "keep").mkdir(parents=True)
    with pytest.raises(ValueError, match="refusing"):
        SweepRunner("inline", other, fresh=True)
    assert (other / "keep").exists()
