"""Hypothesis profiles: deterministic ``ci``, quick ``dev``, large ``thorough``."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["register_profiles", "PROFILES"]

PROFILES = ("ci", "dev", "thorough")


def register_profiles(load: bool = True) -> str:
    """Register the three profiles and (by default) load one; returns its name.

    ``HYPOTHESIS_PROFILE`` picks the profile; otherwise ``ci`` when ``CI`` is set
    (deterministic: derandomize, no deadline, no example database), else ``dev``.
    """
    settings.register_profile(
        "ci", derandomize=True, deadline=None, database=None, max_examples=60,
        suppress_health_check=[HealthCheck.too_slow], print_blob=True,
    )
    settings.register_profile("dev", deadline=None, max_examples=25)
    settings.register_profile(
        "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow],
    )
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE must be one of {list(PROFILES)}, got HYPOTHESIS_PROFILE={name!r}")
    if load:
        settings.load_profile(name)
    return name
