"""Every notebook runs top to bottom (fast settings) and its .ipynb matches its .py pair."""

import os
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_is_in_sync(path):
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --sync notebooks/*.py`"
    code_py = [c.source for c in jupytext.read(path).cells]
    code_nb = [c.source for c in nbformat.read(ipynb, as_version=4).cells]
    assert code_py == code_nb, f"{path.name} and {ipynb.name} differ: run `jupytext --sync`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch, tmp_path):
    monkeypatch.setenv("IMBALANCE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel imports the checkout under test, installed or not
    root = str(Path(__file__).parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    nb = jupytext.read(path)
    # a last cell reports what the kernel saw: the fast setting must have reached it
    report = 'import os; print("IMBALANCE_FAST=" + os.environ.get("IMBALANCE_FAST", ""))'
    nb.cells.append(nbformat.v4.new_code_cell(report))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [c for c in nb.cells if c.cell_type == "code"]
    # every code cell ran, in order (none skipped or left unexecuted)
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    seen = "".join(o.get("text", "") for o in code[-1].outputs if o.output_type == "stream")
    assert seen.strip() == "IMBALANCE_FAST=1", f"the kernel saw {seen!r}"
