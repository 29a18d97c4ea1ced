import contextlib
import io
import os
from types import SimpleNamespace

import pytest

from imbalance.testing import register_profiles

# ci: deterministic (loaded when CI is set); dev: the default; thorough: HYPOTHESIS_PROFILE=thorough
register_profiles()


def pytest_configure(config):
    """Under pytest-xdist (``-n N``) each worker gets its share of the cores for torch's threads,
    and so do the processes it starts (local sweep jobs, notebook kernels): N workers with a full
    thread pool each would oversubscribe the machine."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def reproduce_fast(tmp_path_factory):
    """One ``imbalance reproduce --fast`` (the default, local executor) for the whole session:
    the tests that read its report, figures and rows share it instead of each training every
    sweep again. ``code``: the exit status, ``out``: the output directory, ``stdout``: what it printed."""
    from imbalance import cli

    out = tmp_path_factory.mktemp("reproduce-fast")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["reproduce", "--fast", "--out", str(out)])
    return SimpleNamespace(code=code, out=out, stdout=printed.getvalue())
