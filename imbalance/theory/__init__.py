"""Exact equilibria of imbalanced softmax models (numpy/scipy; never imports sim)."""

from .adamw_shared import SharedAdamWEquilibrium, factored_bigram_adamw_equilibrium, ufm_adamw_equilibrium
from .bigram import AdjustedLoss, BigramEquilibrium, bigram_equilibrium
from .factored_bigram import FactoredBigramEquilibrium, factored_bigram_equilibrium
from .margin import MarginLaw, margin_law
from .nuclear import NuclearSolution, solve_nuclear_softmax
from .ufm import UFMEquilibrium, minority_collapse_threshold, minority_cosine, two_group_pi, ufm_equilibrium
from .unigram import UnigramEquilibrium, unigram_equilibrium

__all__ = [
    "unigram_equilibrium", "UnigramEquilibrium",
    "bigram_equilibrium", "BigramEquilibrium", "AdjustedLoss",
    "margin_law", "MarginLaw",
    "factored_bigram_equilibrium", "FactoredBigramEquilibrium",
    "ufm_equilibrium", "UFMEquilibrium", "minority_cosine", "minority_collapse_threshold", "two_group_pi",
    "solve_nuclear_softmax", "NuclearSolution",
    "factored_bigram_adamw_equilibrium", "ufm_adamw_equilibrium", "SharedAdamWEquilibrium",
]
