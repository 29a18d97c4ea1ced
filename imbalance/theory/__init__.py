"""Exact equilibria of imbalanced softmax models (numpy/scipy; never imports sim)."""

from .bigram import BigramEquilibrium, bigram_equilibrium
from .margin import MarginLaw, margin_law
from .unigram import UnigramEquilibrium, unigram_equilibrium

__all__ = [
    "unigram_equilibrium", "UnigramEquilibrium",
    "bigram_equilibrium", "BigramEquilibrium",
    "margin_law", "MarginLaw",
]
