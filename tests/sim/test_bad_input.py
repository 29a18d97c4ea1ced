"""Bad input to the simulation layer, drawn by hypothesis: every public entry point answers with a
``ValueError`` that names the parameter — never another exception, a hang or a silent NaN — and
stored files that are truncated, corrupt, foreign or crafted (a pickle payload) are refused with a
clear error and never executed."""

import json
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from imbalance.sim import (
    BigramTable,
    BigramTask,
    FeatureTask,
    LinearSoftmax,
    SequenceTask,
    TokenStreamTask,
    frequency_decay_scale,
    sweep,
)
from imbalance.sim.devices import numerics, resolve_device

TASK = BigramTask.stochastic_zipf(6, 1.1, 0.6)
GOOD = dict(model=BigramTable(), optimizer="adamw", steps=2, batch_size=4, lr=0.05, seeds=(0,), eval_every=1,
            progress=False)

NAN, INF = float("nan"), float("inf")
_JUNK = st.sampled_from([None, "abc", "", [], {}, object(), b"x", [[1.0]], NAN, INF, -INF, -1, True])
BAD = {
    "lams": st.sampled_from([[NAN], [INF], [-0.1], [], [[0.1]], "abc", None, object(), {"a": 1}]),
    "model": st.sampled_from(["bigram", None, 3, LinearSoftmax(), object()]),
    "optimizer": st.one_of(st.sampled_from(["lbfgs", "", None, 3]), st.text(max_size=8).filter(
        lambda s: s.lower() not in ("sgd", "adamw"))),
    "steps": st.one_of(st.integers(max_value=0), st.sampled_from([1.5, "10", None, NAN, INF, True, [2]])),
    "batch_size": st.one_of(st.integers(max_value=0), st.sampled_from([0.5, "8", None, NAN, True])),
    "lr": st.one_of(st.floats(max_value=0.0), st.sampled_from([NAN, INF, "x", None, [0.1]])),
    "seeds": st.sampled_from([(-1,), (1, 1), "a", [[0]], 1.5, (), (0, None), NAN]),
    "dtype": st.sampled_from([torch.int64, torch.bool, "float32", np.float64, None, 3]),
    "device": st.sampled_from(["tpu", 3, "cuda:x", "", None, [0]]),
    "eval_every": st.sampled_from([-2, "x", 1.5, NAN, [1]]),
    "average_last": st.sampled_from([-1, 3, "x", 1.5, NAN, None]),
    "betas": st.sampled_from([(1.0, 0.9), (0.9,), "ab", (NAN, 0.9), (0.9, -0.1), None, (0.9, INF)]),
    "eps": st.one_of(st.floats(max_value=-1e-300), st.sampled_from([NAN, INF, "x", None])),
    "decay_scale": st.sampled_from([{"W": -np.ones((6, 1))}, {"Q": np.ones(6)}, [1, 2], {"W": np.ones(5)},
                                    {"W": np.full((6, 1), NAN)}, "W"]),
    "fused": st.sampled_from(["yes", 2, None, "AUTO"]),
    "precision": st.sampled_from(["fp8", None, 3, "BF17"]),
    "deterministic": st.sampled_from(["yes", None, 2]),
    "callback": st.sampled_from([3, "print"]),
}
# the name each parameter's message carries (betas[0] for betas, ...)
NAMED = {"betas": "betas"}


def _cuda_or_mps_absent(value):
    return value in ("cuda", "mps")


@given(data=st.data(), name=st.sampled_from(sorted(BAD)))
def test_sweep_refuses_bad_arguments_by_name(data, name):
    value = data.draw(BAD[name], label=name)
    kw = {**GOOD, name: value}
    lams = kw.pop("lams", [0.1])
    with pytest.raises(ValueError) as err:
        sweep(TASK, lams, **kw)
    assert NAMED.get(name, name) in str(err.value) or (name == "model" and "task" in str(err.value)), str(err.value)


def test_sweep_with_a_model_name_instead_of_a_model():
    with pytest.raises(ValueError, match="model"):
        sweep(TASK, [0.1], **{**GOOD, "model": "bigram"})


TASK_BAD = {
    BigramTask: ("counts", st.sampled_from([np.array([[1.0, -1.0], [1.0, 1.0]]), np.zeros((2, 2)), [[NAN, 1.0]],
                                            np.ones((1, 1)), "abc", None, np.ones(3)])),
    FeatureTask: ("K", st.sampled_from([1, 0, -3, 1.5, "4", None, NAN])),
    SequenceTask: ("V", st.sampled_from([1, 0, -3, 2.5, "8", None])),
    TokenStreamTask: ("ids", st.sampled_from([np.array([0, 1, 99] * 30), np.array([0.5] * 90), np.array([-1] * 90),
                                              np.zeros((3, 30), dtype=int), "abc", None, np.zeros(3, dtype=int)])),
}


@given(data=st.data(), cls=st.sampled_from(sorted(TASK_BAD, key=lambda c: c.__name__)))
def test_tasks_refuse_bad_arguments_by_name(data, cls):
    name, strat = TASK_BAD[cls]
    value = data.draw(strat, label=name)
    args = {BigramTask: lambda v: dict(counts=v), FeatureTask: lambda v: dict(K=v, dim=2),
            SequenceTask: lambda v: dict(V=v), TokenStreamTask: lambda v: dict(ids=v, vocab_size=10, seq_len=4)}[cls]
    with pytest.raises(ValueError, match=name):
        cls(**args(value))


@given(value=st.sampled_from([-3, 0, 1.5, NAN, "8", None]))
def test_frequency_decay_scale_refuses_bad_batch_size(value):
    with pytest.raises(ValueError, match="batch_size"):
        frequency_decay_scale(np.ones(4) / 4, "adamw", batch_size=value)


def test_numerics_and_devices_refuse_bad_names():
    with pytest.raises(ValueError, match="precision"):
        with numerics("cpu", "half"):
            pass
    for bad in ("tpu", 3, None):
        with pytest.raises(ValueError, match="device"):
            resolve_device(bad)


# --- stored files ----------------------------------------------------------------------

class _Payload:
    """Unpickling this would run ``exec``: a checkpoint must never be unpickled with code."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def _stored(tmp_path):
    out = tmp_path / "run"
    sweep(TASK, [0.1], out=out, **{**GOOD, "steps": 4, "eval_every": 2})
    return out


@pytest.mark.parametrize("kind", ["garbage", "truncated", "pickle_payload", "foreign_tensor", "empty_dict",
                                  "right_fingerprint_wrong_content"])
def test_checkpoint_files_are_refused_not_executed(tmp_path, kind, monkeypatch):
    out = _stored(tmp_path)
    ck = out / "checkpoint.pt"
    fingerprint = json.loads((out / "config.json").read_text())["fingerprint"]
    monkeypatch.chdir(tmp_path)
    if kind == "garbage":
        ck.write_bytes(bytes(range(256)) * 4)
    elif kind == "truncated":
        ck.write_bytes(ck.read_bytes()[: len(ck.read_bytes()) // 2])
    elif kind == "pickle_payload":
        ck.write_bytes(pickle.dumps({"fingerprint": fingerprint, "step": _Payload()}))
    elif kind == "foreign_tensor":
        torch.save({"weights": torch.ones(3)}, ck)
    elif kind == "empty_dict":
        torch.save({}, ck)
    else:
        torch.save({"fingerprint": fingerprint, "step": 2, "params": {"W": torch.ones(2)}}, ck)
    with pytest.raises(ValueError, match="checkpoint|different sweep|this sweep"):
        sweep(TASK, [0.1], out=out, **{**GOOD, "steps": 6, "eval_every": 2})
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("text", ['[1, 2]', '"a string"', "{" * 100000, '{"format": "imbalance.sim.sweep/1"}',
                                  "\udcff"])
def test_config_files_that_are_not_ours_are_refused(tmp_path, text):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match="config|format|JSON"):
        sweep(TASK, [0.1], out=out, **GOOD)


def test_results_lines_that_are_not_ours_are_skipped(tmp_path):
    out = _stored(tmp_path)
    with open(out / "results.jsonl", "a") as f:
        f.write('[1, 2]\n5\n{"no_step": 1}\n{"step": "x"}\n')
    res = sweep(TASK, [0.1], out=out, **{**GOOD, "steps": 4, "eval_every": 2})
    assert math.isfinite(float(np.nanmean(res.loss_per_token)))
    steps = [json.loads(x).get("step") for x in (out / "results.jsonl").read_text().splitlines()
             if x.startswith("{")]
    assert [s for s in steps if isinstance(s, int)] == [0, 2, 4]
    (out / "results.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not a text file"):
        sweep(TASK, [0.1], out=out, **{**GOOD, "steps": 4, "eval_every": 2})
