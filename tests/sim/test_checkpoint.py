"""SweepStore: what a sweep directory holds, and how it refuses what it did not write.

(Corrupt, truncated and crafted checkpoints reached through ``sweep(out=...)`` are tested in
``test_bad_input.py``; these tests call the store itself.)
"""

from __future__ import annotations

import json

import pytest
import torch

from imbalance.sim.checkpoint import SweepStore

CONFIG = {"fingerprint": "abc123", "lams": [0.1, 1.0]}


def test_checkpoint_round_trip_and_missing_checkpoint(tmp_path):
    store = SweepStore(tmp_path / "s", CONFIG)
    assert store.load() is None
    gen = torch.Generator().manual_seed(3)
    W = torch.randn(2, 3, dtype=torch.float64, generator=gen)  # (M, V)
    store.save({"W": W, "step": 7, "generator": gen.get_state()})
    back = SweepStore(tmp_path / "s", CONFIG).load()  # a new process reopening the directory
    assert back["step"] == 7 and back["fingerprint"] == "abc123"
    assert torch.equal(back["W"], W)
    assert torch.equal(back["generator"], gen.get_state())


def test_a_different_sweep_is_refused_by_name(tmp_path):
    SweepStore(tmp_path / "s", CONFIG)
    with pytest.raises(ValueError, match=r"different sweep.*lams"):
        SweepStore(tmp_path / "s", {**CONFIG, "lams": [0.1]})


def test_an_earlier_format_and_a_foreign_config_are_refused(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"format": "imbalance.sim.sweep/1", **CONFIG}))
    with pytest.raises(ValueError, match="earlier version"):
        SweepStore(old, CONFIG)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps(["not", "ours"]))
    with pytest.raises(ValueError, match="not an imbalance sweep config"):
        SweepStore(foreign, CONFIG)
    (foreign / "config.json").write_text("{torn")
    with pytest.raises(ValueError, match="not valid JSON"):
        SweepStore(foreign, CONFIG)


def test_checkpoint_of_another_sweep_is_refused(tmp_path):
    SweepStore(tmp_path / "a", CONFIG).save({"step": 1})
    other = SweepStore(tmp_path / "b", {**CONFIG, "fingerprint": "zzz"})
    (tmp_path / "a" / "checkpoint.pt").replace(other.checkpoint_path)
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        other.load()


def test_results_append_once_and_drop_a_torn_line(tmp_path):
    store = SweepStore(tmp_path / "s", CONFIG)
    store.append_results([{"step": 0, "loss": 2.0}, {"step": 10, "loss": 1.5}])
    store.append_results([{"step": 10, "loss": 1.5}])  # a resumed run re-sends its last evaluation
    with open(store.dir / "results.jsonl", "a") as f:
        f.write('{"step": 20, "lo')  # killed mid-write
    assert [r["step"] for r in store.read_results()] == [0, 10]
    store.append_results([{"step": 20, "loss": 1.2}])
    lines = (store.dir / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 10, 20]


def test_results_that_are_not_text_are_refused(tmp_path):
    store = SweepStore(tmp_path / "s", CONFIG)
    (store.dir / "results.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8"):
        store.read_results()


def test_out_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="out must be a directory"):
        SweepStore(f, CONFIG)
