"""Exact equilibria of imbalanced softmax models (numpy/scipy; never imports sim)."""

from .adamw_shared import SharedAdamWEquilibrium, factored_bigram_adamw_equilibrium, ufm_adamw_equilibrium
from .bigram import AdjustedLoss, BigramEquilibrium, bigram_equilibrium
from .collapse import AllCollapse, factored_collapse_frequency, ufm_all_collapse, ufm_collapse_frequency
from .dynamics import BigramTrajectory, bigram_trajectory
from .factored_bigram import FactoredBigramEquilibrium, factored_bigram_equilibrium
from .factored_dynamics import FactoredTrajectory, factored_adamw_trajectory, factored_gd_trajectory
from .fair_decay import FairMarginLaw, fair_bigram_equilibrium, fair_margin_law, row_decay_scale
from .loss_bounds import ColumnBound, LossCeiling, factored_column_bound, factored_loss_ceiling, ufm_loss_ceiling
from .loss_split import LossSplit, loss_split, sweep_loss_split
from .margin import MarginLaw, margin_law
from .nuclear import NuclearSolution, solve_nuclear_softmax
from .ufm import (
    MinorityCosine,
    UFMEquilibrium,
    minority_collapse_threshold,
    minority_cosine,
    two_group_pi,
    ufm_equilibrium,
)
from .unigram import UnigramEquilibrium, unigram_equilibrium

__all__ = [
    "unigram_equilibrium", "UnigramEquilibrium",
    "bigram_equilibrium", "BigramEquilibrium", "AdjustedLoss",
    "margin_law", "MarginLaw",
    "factored_bigram_equilibrium", "FactoredBigramEquilibrium",
    "ufm_equilibrium", "UFMEquilibrium", "minority_cosine", "MinorityCosine", "minority_collapse_threshold",
    "two_group_pi",
    "solve_nuclear_softmax", "NuclearSolution",
    "ufm_collapse_frequency", "factored_collapse_frequency", "ufm_all_collapse", "AllCollapse",
    "ufm_loss_ceiling", "factored_loss_ceiling", "LossCeiling", "factored_column_bound", "ColumnBound",
    "fair_margin_law", "FairMarginLaw", "fair_bigram_equilibrium", "row_decay_scale",
    "bigram_trajectory", "BigramTrajectory", "factored_gd_trajectory", "factored_adamw_trajectory",
    "FactoredTrajectory",
    "loss_split", "sweep_loss_split", "LossSplit",
    "factored_bigram_adamw_equilibrium", "ufm_adamw_equilibrium", "SharedAdamWEquilibrium",
]
