import json
import subprocess
import sys

import pytest

from imbalance import cli, reproduce
from imbalance.reproduce import Check, Section


def test_reproduce_fast_writes_report_figures_and_tidy_results(tmp_path, capsys):
    assert cli.main(["reproduce", "--fast", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "T1" in out and "yes" in out and "NO" not in out
    report = (tmp_path / "report.md").read_text()
    for name in ("unigram", "margins", "margins_sim", "bigram", "ufm", "factored", "lm_paradox"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
        assert (tmp_path / f"{name}.svg").exists()
        assert f"({name}.png)" in report
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["section"] for r in rows} == {"unigram", "margins", "margins_sim", "bigram", "bigram_sim", "features",
                                            "ufm", "factored", "lm_paradox"}
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
