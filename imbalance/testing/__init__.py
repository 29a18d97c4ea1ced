"""Hypothesis strategies and profiles for property-testing imbalanced softmax models.

Requires the optional dependency ``hypothesis`` (``pip install imbalance[dev]``).
"""

from .profiles import register_profiles
from .strategies import (
    bigram_counts,
    feature_sets,
    frequency_vectors,
    labelled_features,
    weight_decays,
    zipf_vectors,
)

__all__ = ["register_profiles", "frequency_vectors", "zipf_vectors", "weight_decays",
           "bigram_counts", "feature_sets", "labelled_features"]
