import os

# Under pytest-xdist (``-n N``) each worker, and every process it starts (local sweep jobs,
# notebook kernels), gets its share of the cores for the thread pools of torch and BLAS: N
# workers with a thread per core each would oversubscribe the machine, and threads that wait at a
# barrier for a descheduled peer burn the time the other worker needs. Set before numpy, scipy
# and torch are imported, as their pools read it once.
_WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
if _WORKERS:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(_WORKERS)))

import contextlib  # noqa: E402
import io  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

from imbalance.testing import register_profiles  # noqa: E402

# ci: deterministic (loaded when CI is set); dev: the default; thorough: HYPOTHESIS_PROFILE=thorough
register_profiles()


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
