"""The library's progress bar: silent off a terminal, drawn on one."""

from __future__ import annotations

import io

from imbalance._progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_is_silent_off_a_terminal(capsys):
    pipe = io.StringIO()  # isatty() is False, like a log file, a pipe or pytest's capture
    assert list(progress_bar(range(5), desc="work", file=pipe, delay=0)) == [0, 1, 2, 3, 4]
    assert pipe.getvalue() == ""
    list(progress_bar(range(5), desc="work", delay=0))  # the default stream, captured by pytest
    assert capsys.readouterr().err == ""


def test_bar_on_a_terminal_reports_progress():
    term = _Terminal()
    with progress_bar(total=7, desc="steps", file=term, delay=0, mininterval=0) as bar:
        for _ in range(7):
            bar.update(1)
    shown = term.getvalue()
    assert "steps" in shown and "7/7" in shown


def test_bar_can_be_switched_off(monkeypatch):
    term = _Terminal()
    list(progress_bar(range(3), file=term, delay=0, enabled=False))
    monkeypatch.setenv("IMBALANCE_PROGRESS", "0")
    list(progress_bar(range(3), file=term, delay=0))
    assert term.getvalue() == ""


def test_quick_loops_show_no_bar():
    term = _Terminal()
    list(progress_bar(range(3), file=term, delay=60))
    assert term.getvalue() == ""
