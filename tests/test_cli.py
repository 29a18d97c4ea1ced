import json
import os
import stat
import subprocess
import sys

import pytest

from imbalance import cli, reproduce
from imbalance.reproduce import Check, Section


def test_reproduce_fast_writes_report_figures_and_tidy_results(reproduce_fast):
    assert reproduce_fast.code == 0
    out, run = reproduce_fast.stdout, reproduce_fast.out
    assert "T1" in out and "yes" in out and "NO" not in out
    report = (run / "report.md").read_text()
    for name in ("unigram", "margins", "margins_sim", "bigram", "ufm", "factored", "adamw_shared", "lm_paradox"):
        assert (run / f"{name}.png").stat().st_size > 1000
        assert (run / f"{name}.svg").exists()
        assert f"({name}.png)" in report
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert {r["section"] for r in rows} == {"unigram", "margins", "margins_sim", "bigram", "bigram_sim", "features",
                                            "token_dynamics", "ufm", "factored", "adamw_shared", "lm_paradox",
                                            "token_dynamics_lm", "fair_optimizers"}
    assert all("lam" in r for r in rows)


def test_a_failed_check_gives_a_nonzero_exit(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "run", lambda st: [Section("x", "x", "x", checks=[Check("T0", "bad", 1.0, 0.1)])])
    monkeypatch.setattr(cli, "run", reproduce.run)
    assert cli.main(["reproduce", "--fast", "--out", str(tmp_path)]) == 1


def test_text_option_runs_the_bigram_part_on_a_user_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(f"word{i % 37} the cat sat on the mat ." for i in range(3000)))
    st = reproduce.Settings(fast=True, text=corpus)
    sec = reproduce.bigram_section(st)
    assert "corpus.txt" in sec.text and len(sec.rows) == 2 * st.lams.size


def test_module_entry_point_and_bad_arguments(tmp_path):
    res = subprocess.run([sys.executable, "-m", "imbalance", "reproduce", "--text", str(tmp_path / "missing.txt")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "no such file" in res.stderr
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--seeds", "0"])


def test_text_option_runs_the_small_lm_on_a_user_corpus(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus.txt"
    words = [f"w{i}" for i in range(80)]
    corpus.write_text(" ".join(f"{words[i % 80]} {words[(7 * i) % 80]} the cat ." for i in range(1500)))
    monkeypatch.setattr(reproduce, "SECTIONS", (reproduce.lm_paradox_section,))
    out = tmp_path / "out"
    assert cli.main(["reproduce", "--fast", "--text", str(corpus), "--out", str(out)]) == 0
    assert "2 sweeps via local" in capsys.readouterr().out  # the default executor: subprocess jobs
    report = (out / "report.md").read_text()
    assert "the user's text corpus.txt (7,500 tokens, V = 64)" in report and "last 20 % of the stream" in report
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["run"] for r in rows} == {"adamw", "adamw+reweight", "adamw+posthoc"} and len(rows) == 12
    assert all(0 < r["aggregate_loss"] < 10 for r in rows)


def _fake_srun(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755 | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_scaleout_options_reach_the_runner(tmp_path, monkeypatch):
    seen = {}

    def fake_run(st):
        seen["st"] = st
        return []

    monkeypatch.setattr(cli, "run", fake_run)
    _fake_srun(tmp_path, monkeypatch)
    old = tmp_path / "out" / "sweeps" / "lm_paradox-adamw-0123456789ab"
    old.mkdir(parents=True)
    (tmp_path / "out" / "sweeps" / ".imbalance-sweeps").touch()
    assert cli.main(["reproduce", "--out", str(tmp_path / "out"), "--executor", "slurm", "--lam-jobs", "3",
                     "--slurm-partition", "gpu", "--slurm-time", "240", "--slurm-gpus", "1", "--slurm-cpus", "6",
                     "--slurm-mem-gb", "16", "--slurm-param", "account=abc", "--slurm-param=--qos=high",
                     "--fresh"]) == 0
    runner = seen["st"].runner
    assert runner.kind == "slurm" and runner.lam_jobs == 3 and runner.root == tmp_path / "out" / "sweeps"
    assert not old.exists()  # --fresh
    params = runner.executor._executor.parameters
    assert params["partition"] == "gpu" and params["time"] == 240 and params["gpus_per_node"] == 1
    assert params["cpus_per_task"] == 6 and params["mem"] == "16GB"
    assert params["additional_parameters"] == {"account": "abc", "qos": "high"}
    assert runner.executor.folder == (tmp_path / "out" / "sweeps" / "jobs" / "%j").absolute()


def test_bad_scaleout_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--out", str(tmp_path), "--executor", "slurm"])
    assert e.value.code == 2 and "srun" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--executor", "pbs"])
    assert e.value.code == 2 and "invalid choice: 'pbs'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--slurm-param", "account"])
    assert "KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--lam-jobs", "0"])


def test_device_cuda_with_slurm_asks_for_a_gpu(tmp_path, monkeypatch, capsys):
    """--device cuda through Slurm gets one GPU per job unless told otherwise; --slurm-gpus 0 is refused."""
    seen = {}
    monkeypatch.setattr(cli, "run", lambda st: seen.setdefault("st", st) and [])
    _fake_srun(tmp_path, monkeypatch)
    assert cli.main(["reproduce", "--out", str(tmp_path / "out"), "--executor", "slurm", "--device", "cuda"]) == 0
    assert seen["st"].runner.executor._executor.parameters["gpus_per_node"] == 1
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--out", str(tmp_path / "out"), "--executor", "slurm", "--device", "cuda",
                  "--slurm-gpus", "0"])
    assert e.value.code == 2 and "gpus=0" in capsys.readouterr().err
