"""Devices and numerics, checked on CPU: TF32 switched through the API a program uses, every
evaluation inside the block, determinism switched on and restored, the GPUs a local job sees."""

import importlib
import json
import os

import numpy as np
import pytest
import torch

from imbalance.sim import BigramTable, BigramTask, SequenceTask, Transformer, sweep
from imbalance.sim.devices import _fp32_switches, numerics, visible_gpus
from imbalance.sim.scaleout.executors import SlurmOptions, local_gpu_parameters, make_executor, slurm_gpus

sweep_mod = importlib.import_module("imbalance.sim.sweep")
TASK = BigramTask.stochastic_zipf(8, 1.1, 0.6)
KW = dict(model=BigramTable(), optimizer="adamw", steps=6, batch_size=8, lr=0.05, seeds=(0,), eval_every=3,
          progress=False, average_last=2)


@pytest.fixture
def new_tf32_api():
    """A program that set TF32 through ``fp32_precision``: reading the legacy flags then raises."""
    if not _fp32_switches():
        pytest.skip("this torch has no fp32_precision settings")
    m, c = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    old = (m.fp32_precision, c.fp32_precision)
    m.fp32_precision, c.fp32_precision = "tf32", "tf32"
    yield
    m.fp32_precision, c.fp32_precision = old


def test_sweep_runs_after_the_new_tf32_api_was_used_and_every_evaluation_is_strict(new_tf32_api, monkeypatch):
    seen = []
    real = sweep_mod.evaluate

    def spy(*a, **k):
        seen.append(torch.backends.cuda.matmul.fp32_precision)
        return real(*a, **k)

    monkeypatch.setattr(sweep_mod, "evaluate", spy)
    sweep(TASK, [0.1], **KW)
    # step 0, steps 3 and 6, and the iterate average: all inside the strict block
    assert seen == ["ieee"] * 4
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"  # restored


def test_precision_settings_inside_numerics():
    if not _fp32_switches():
        pytest.skip("this torch has no fp32_precision settings")
    before = torch.backends.cuda.matmul.fp32_precision
    with numerics("cpu", "tf32", deterministic=False):
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    with numerics("cpu", "bf16", deterministic=False):
        assert torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with numerics("cpu", "strict", deterministic=True):
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cuda.matmul.fp32_precision == before
    with pytest.raises(ValueError, match="precision"):
        with numerics("cpu", "fp8"):
            pass


def test_bf16_sweep_is_recorded_and_close_to_float32(tmp_path):
    """bfloat16 autocast trains the same model to within bf16 rounding of the float32 run (8 bits
    of mantissa: relative 2⁻⁸ per product; a short run stays within a few percent), and the
    setting enters the sweep's identity."""
    task = SequenceTask(V=16, lag=2, seq_len=6, n_train=32, n_heldout=16)
    kw = dict(model=Transformer(n_layer=1, n_head=2, d_model=8), optimizer="adamw", steps=4, batch_size=4, lr=1e-2,
              seeds=(0,), dtype=torch.float32, progress=False)
    strict = sweep(task, [0.1], **kw)
    bf16 = sweep(task, [0.1], precision="bf16", out=tmp_path, **kw)
    assert np.allclose(bf16.loss_per_token, strict.loss_per_token, rtol=0.05, equal_nan=True)
    assert not np.array_equal(bf16.train_loss, strict.train_loss)
    assert json.loads((tmp_path / "config.json").read_text())["precision"] == "bf16"
    with pytest.raises(ValueError, match="bf16"):
        sweep(task, [0.1], **{**kw, "dtype": torch.float64, "precision": "bf16"})


def test_local_executor_hands_the_visible_gpus_to_its_jobs(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert visible_gpus() == (2, None)
    assert local_gpu_parameters() == {"gpus_per_node": 2}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert local_gpu_parameters() == {"gpus_per_node": 2, "visible_gpus": (3, 5)}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1a2b,GPU-3c4d")
    assert local_gpu_parameters()["setup"] == ["export CUDA_VISIBLE_DEVICES=GPU-1a2b,GPU-3c4d"]


@pytest.mark.parametrize("visible", ["3,5", "GPU-1a2b", ""])
def test_a_local_job_sees_the_parents_gpus(tmp_path, monkeypatch, visible):
    """Started through the local executor, a job's CUDA_VISIBLE_DEVICES is the submitter's."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    ex = make_executor("local", tmp_path)
    job = ex.submit(os.environ.get, "CUDA_VISIBLE_DEVICES")
    assert job.result() == visible


def test_slurm_jobs_get_a_gpu_when_the_sweeps_ask_for_cuda(tmp_path):
    assert slurm_gpus(SlurmOptions(), "cuda") == 1
    assert slurm_gpus(SlurmOptions(), "auto") == 0
    assert slurm_gpus(SlurmOptions(gpus=4), "cuda") == 4
    with pytest.raises(ValueError, match="gpus=0"):
        slurm_gpus(SlurmOptions(gpus=0), "cuda")
    ex = make_executor("slurm", tmp_path, cluster="debug", device="cuda")
    assert ex is not None


def test_auto_device_is_resolved_in_the_job_not_the_submitter(tmp_path, monkeypatch):
    """The runner passes device="auto" through: a job resolves it where it runs."""
    from imbalance.sim.scaleout import SweepRunner

    got = []
    real = sweep_mod.sweep

    monkeypatch.setattr("imbalance.sim.scaleout.jobs.sweep", lambda *a, **k: got.append(k["device"]) or real(*a, **k))
    runner = SweepRunner("inline", tmp_path)
    runner.submit("probe", TASK, [0.1], device="auto", **KW).result()
    assert got == ["auto"]



def test_evaluation_batches_fit_the_device_memory(monkeypatch):
    """48 models × V = 32k × T = 64 in float32: rows per batch so that four (M, rows, T, V) arrays fit
    in a quarter of the free (and an eighth of the total) memory of a mocked 140 GB GPU."""
    from imbalance.sim.evaluate import eval_batch_rows
    GB = 2 ** 30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * GB, 140 * GB))
    rows = eval_batch_rows(48, 64, 32768, torch.float32, torch.device("cuda"))
    per_row = 4 * 48 * 64 * 32768 * 4
    assert rows & (rows - 1) == 0 and rows * per_row <= 140 * GB // 8 < 2 * rows * per_row
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (GB, 140 * GB))
    assert eval_batch_rows(48, 64, 32768, torch.float32, torch.device("cuda")) == 1
