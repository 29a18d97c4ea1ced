"""imbalance: how weight decay makes softmax models neglect rare tokens.

Exact equilibria (``imbalance.theory``), symbolic derivations
(``imbalance.symbolic``), torch simulations (``imbalance.sim``) and metrics.
"""

from . import formulas, metrics, theory
from .theory import bigram_equilibrium, margin_law, unigram_equilibrium
from .zipf import frequency_buckets, zipf_pmf

__version__ = "0.1.0"

__all__ = ["zipf_pmf", "frequency_buckets", "theory", "metrics", "formulas", "unigram_equilibrium",
           "bigram_equilibrium", "margin_law", "__version__"]
