"""An exclusive lock on a sweep's directory, so that a job left over from a killed run finishes
before another starts on the same files."""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["locked"]


@contextlib.contextmanager
def locked(out):
    """Hold an exclusive lock on ``out`` (None: no lock); where the file system has no locks,
    go on without."""
    if out is None:
        yield
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / ".lock", "a") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        yield
