from imbalance.testing import register_profiles

# ci: deterministic (loaded when CI is set); dev: the default; thorough: HYPOTHESIS_PROFILE=thorough
register_profiles()
