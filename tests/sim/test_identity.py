"""One identity per sweep: ``sweep(out=...)``'s stored fingerprint, the scale-out key and the
runner's directory name are one hash of one description, stable across spellings of the same
arguments and across processes, and different for every setting that changes the numbers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from imbalance.sim import BigramTable, BigramTask, TokenStreamTask, Transformer, sweep
from imbalance.sim.scaleout import SweepRunner, sweep_key
from imbalance.sim.sweep import sweep_identity

TASK = BigramTask.stochastic_zipf(10, 1.1, 0.6)
KW = dict(model=BigramTable(), optimizer="adamw", steps=8, batch_size=8, lr=0.05, seeds=(0, 1), eval_every=4,
          progress=False)


def test_sweep_store_runner_and_key_agree(tmp_path):
    sweep(TASK, [0.1, 0.2], out=tmp_path / "direct", **KW)
    stored = json.loads((tmp_path / "direct" / "config.json").read_text())["fingerprint"]
    assert stored == sweep_key(TASK, [0.1, 0.2], **KW)
    runner = SweepRunner("inline", tmp_path / "runner")
    runner.submit("probe", TASK, [0.1, 0.2], **KW).result()
    (name, _), = runner.log
    assert name == f"probe-{stored[:12]}"
    on_disk = json.loads((tmp_path / "runner" / name / "config.json").read_text())["fingerprint"]
    assert on_disk == stored


def test_same_sweep_spelled_differently_has_one_key():
    ref = sweep_key(TASK, [0.1, 0.2], **KW)
    same = [
        dict(lams=np.array([0.1, 0.2]), kw=KW),
        dict(lams=(0.1, 0.2), kw={**KW, "seeds": [0, 1]}),
        dict(lams=[0.1, 0.2], kw={**KW, "seeds": np.array([0, 1]), "device": "cpu", "progress": True,
                                  "callback": print, "out": "/nowhere"}),
        dict(lams=[0.1, 0.2], kw={**KW, "optimizer": "AdamW", "batch_size": 8.0, "betas": [0.9, 0.999]}),
    ]
    for case in same:
        assert sweep_key(TASK, case["lams"], **case["kw"]) == ref
    assert sweep_key(TASK, [0.1, 0.2], **{**KW, "eval_every": None, "steps": 80}) == \
        sweep_key(TASK, [0.1, 0.2], **{**KW, "eval_every": 4, "steps": 80})  # the default is 80 // 20 = 4


@pytest.mark.parametrize("change", [
    {"lr": 0.051}, {"steps": 9}, {"seeds": (0, 2)}, {"batch_size": 9}, {"eval_every": 2}, {"eps": 1e-9},
    {"betas": (0.8, 0.999)}, {"reweight": True}, {"average_last": 2}, {"dtype": torch.float32},
    {"fused": True}, {"deterministic": False}, {"optimizer": "sgd"},
    {"decay_scale": {"W": np.linspace(0.5, 1.5, 10)[:, None]}},
])
def test_every_setting_that_changes_numbers_changes_the_key(change):
    assert sweep_key(TASK, [0.1, 0.2], **{**KW, **change}) != sweep_key(TASK, [0.1, 0.2], **KW)


def test_task_shape_and_settings_enter_the_key():
    """Two count matrices with the same nonzeros but one more (empty) column, and one token stream
    cut into windows of two lengths, are different tasks."""
    c = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]]))
    wide = sp.csr_matrix((c.data, c.indices, c.indptr), shape=(2, 4))
    assert sweep_key(BigramTask(c), [0.1], **KW) != sweep_key(BigramTask(wide), [0.1], **KW)
    ids = np.arange(4 * 9 * 17) % 7
    kw = {**KW, "model": Transformer(1, 1, 4)}
    a = TokenStreamTask(ids, 7, seq_len=8, heldout_fraction=0.5)
    b = TokenStreamTask(ids, 7, seq_len=16, heldout_fraction=0.5)
    assert sweep_key(a, [0.1], **kw) != sweep_key(b, [0.1], **kw)
    assert sweep_key(BigramTask(c, r=2.0), [0.1], **KW) != sweep_key(BigramTask(c), [0.1], **KW)


def test_key_is_stable_across_processes():
    """The key does not depend on Python's per-process string hashing or on dict order."""
    code = ("from imbalance.sim import BigramTable, BigramTask; from imbalance.sim.scaleout import sweep_key; "
            "print(sweep_key(BigramTask.stochastic_zipf(10, 1.1, 0.6), [0.1, 0.2], model=BigramTable(), "
            "optimizer='adamw', steps=8, batch_size=8, lr=0.05, seeds=(0, 1), eval_every=4))")
    keys = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        keys.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True).stdout.strip())
    assert keys == {sweep_key(TASK, [0.1, 0.2], **KW)}


def test_identity_leaves_out_device_and_needs_no_gpu():
    ident = sweep_identity(TASK, [0.1], **{**KW, "device": "cuda"})  # no CUDA here: parsed, not required
    assert "device" not in ident and ident["fingerprint"] == sweep_key(TASK, [0.1], **KW)
