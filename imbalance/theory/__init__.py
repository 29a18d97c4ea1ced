"""Exact equilibria of imbalanced softmax models (numpy/scipy; never imports sim)."""
from .factored_bigram import FactoredBigramEquilibrium, bigram_counts, factored_bigram_equilibrium  # noqa: E402,F401
from .nuclear import NuclearSolution, solve_nuclear_softmax  # noqa: E402,F401
from .ufm import (UFMEquilibrium, minority_collapse_threshold, minority_cosine, two_group_pi,  # noqa: E402,F401
                  ufm_equilibrium)
