import os

from hypothesis import HealthCheck, settings

# Deterministic in CI, quick while developing, large on demand (HYPOTHESIS_PROFILE=thorough).
settings.register_profile(
    "ci", derandomize=True, deadline=None, database=None, max_examples=60,
    suppress_health_check=[HealthCheck.too_slow], print_blob=True,
)
settings.register_profile("dev", deadline=None, max_examples=25)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
