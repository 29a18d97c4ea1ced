"""Sympy derivations of T1–T9 (one module per model); never imports imbalance.theory.

Each function derives its result from the model's objective and returns sympy
expressions with declared assumptions, which tests ``lambdify`` (see
``_common.lambdify_numeric``) and compare with the independent numeric solvers.
"""

from . import adamw, bigram, collapse, factored, fair_decay, features, loss_bounds, mitigation, ufm, unigram
from ._common import lambdify_numeric, wright_omega

__all__ = ["unigram", "bigram", "adamw", "features", "ufm", "mitigation", "factored", "collapse", "loss_bounds",
           "fair_decay", "wright_omega", "lambdify_numeric"]
