"""`imbalance lm train` and `imbalance lm audit` end to end on tiny settings; bad input."""

import pytest

from imbalance.lm.cli import main


def test_train_then_audit(corpus_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["lm", "train", "--text", str(corpus_file), "--vocab", "400", "--lams", "0,1", "--seeds", "1",
            "--layers", "1", "--width", "32", "--heads", "2", "--context", "16", "--steps", "4",
            "--batch-tokens", "64", "--warmup", "1", "--eval-every", "2", "--eval-tokens", "256",
            "--final-eval-tokens", "1024", "--device", "cpu", "--save-model", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "embedding+unembedding (tied)" in text and "report:" in text
    assert (out / "report.md").is_file() and (out / "runs" / "lam1-seed0" / "model" / "config.json").is_file()
    report = (out / "report.md").read_text()
    assert "T3 margin / head's" in report and "T7/T8: the factored bigram optimum" in report
    model = out / "runs" / "lam1-seed0" / "model"
    assert main(["lm", "audit", str(model), "--text", str(corpus_file), "--max-tokens", "2000", "--device", "cpu",
                 "--out", str(tmp_path / "a")]) == 0
    assert "token-balanced" in capsys.readouterr().out and (tmp_path / "a" / "audit.png").is_file()


def test_corpus_chars_cuts_whole_lines(tmp_path):
    from imbalance.lm.corpus import shipped_corpus_text, write_shipped_corpus

    full = shipped_corpus_text()
    path = write_shipped_corpus(tmp_path / "head.txt", max_chars=5000)
    text = path.read_text(encoding="utf-8")
    assert len(text) <= 5000 and text.endswith("\n") and full.startswith(text)
    assert full[len(text) - 1:].startswith("\n") and len(full[:5000].rsplit("\n", 1)[0]) + 1 == len(text)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_chars"):
            write_shipped_corpus(tmp_path / "bad.txt", max_chars=bad)


def test_train_bad_input(tmp_path, capsys):
    assert main(["lm", "train", "--text", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.txt" in capsys.readouterr().err
    assert main(["lm", "train", "--context", "100", "--batch-tokens", "150", "--out", str(tmp_path / "o")]) == 2
    assert "--batch-tokens" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lm", "train", "--lams", "a,b"])
    assert main(["lm", "train", "--text", str(tmp_path / "nope.txt"), "--corpus-chars", "100", "--out",
                 str(tmp_path / "o")]) == 2
    assert "--corpus-chars" in capsys.readouterr().err
