"""The key a stored sweep is found by: the fingerprint of its identity (``imbalance.sim.identity``),
the same hash ``sweep(out=...)`` stamps its checkpoint with."""

from __future__ import annotations

from ..sweep import sweep_identity

__all__ = ["sweep_key"]


def sweep_key(task, lams, **sweep_kw) -> str:
    """SHA-256 hex of everything that determines a sweep's numbers (``sweep_identity``);
    ``device``, ``out``, ``callback`` and ``progress`` do not enter it."""
    return sweep_identity(task, lams, **sweep_kw)["fingerprint"]
