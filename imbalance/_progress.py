"""Progress bars: one switch for the whole library.

Every loop that can run longer than a few seconds (sweeps, jobs, λ grids of slow solves, the
report's sections) wraps itself in :func:`progress_bar`. The bar is drawn only on a terminal:
tqdm's ``disable=None`` turns it off when the stream it writes to is not a tty, so tests, logs,
pipes and executed notebooks stay clean; ``IMBALANCE_PROGRESS=0`` turns every bar off, and
``enabled=False`` one call's. A bar appears only after ``delay`` seconds, so quick steps never
flash one. A notebook's streams are not terminals, so notebooks show no bar (and no warning
about missing widgets). Numpy-free and torch-free: theory, sim and the CLI import it alike.
"""

from __future__ import annotations

import os
import warnings

from tqdm import TqdmWarning

__all__ = ["progress_bar"]


def progress_bar(iterable=None, *, total=None, desc: str | None = None, enabled: bool = True, delay: float = 1.0,
                 leave: bool = False, **kw):
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one with ``total``), shown only on a
    terminal and only once the loop has run ``delay`` seconds; ``enabled=False`` never shows it.

    Other keywords (``unit``, ``initial``, ``file``, ...) go to tqdm.

    >>> sum(progress_bar(range(4), desc="quiet off a terminal"))
    6
    """
    with warnings.catch_warnings():  # in a kernel without ipywidgets tqdm.auto warns on import
        warnings.simplefilter("ignore", TqdmWarning)
        from tqdm.auto import tqdm
    off = not enabled or os.environ.get("IMBALANCE_PROGRESS", "1") == "0"
    return tqdm(iterable, total=total, desc=desc, disable=True if off else None, delay=delay, leave=leave, **kw)
