"""Torch simulations: tasks, stacked models, batched optimisers and the sweep trainer.

Theory comparisons live in ``imbalance.sim.validate`` (the only module here that imports
``imbalance.theory``).
"""

from .devices import resolve_device
from .models import BigramTable, FactoredBigram, LinearSoftmax
from .optim import BatchedAdamW, BatchedSGD, RowGrad, frequency_decay_scale, make_optimizer
from .paradox import ParadoxResult, paradox_sweep, tokens_per_batch_sweep
from .sweep import SweepResult, sweep
from .tasks import BigramTask, FeatureTask, SequenceTask, TokenStreamTask
from .transformer import Transformer

__all__ = [
    "resolve_device", "BigramTable", "FactoredBigram", "LinearSoftmax", "Transformer", "BatchedAdamW",
    "BatchedSGD", "RowGrad", "frequency_decay_scale", "make_optimizer", "SweepResult", "sweep",
    "ParadoxResult", "paradox_sweep", "tokens_per_batch_sweep", "BigramTask", "FeatureTask", "SequenceTask",
    "TokenStreamTask",
]
