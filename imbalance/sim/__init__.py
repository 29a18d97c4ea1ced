"""Torch simulations: tasks, stacked models, batched optimisers and the sweep trainer."""

from .devices import resolve_device
from .models import BigramTable, FactoredBigram, LinearSoftmax
from .optim import BatchedAdamW, BatchedSGD, frequency_decay_scale, make_optimizer
from .sweep import SweepResult, sweep
from .tasks import BigramTask, FeatureTask, SequenceTask

__all__ = [
    "resolve_device", "BigramTable", "FactoredBigram", "LinearSoftmax", "BatchedAdamW", "BatchedSGD",
    "frequency_decay_scale", "make_optimizer", "SweepResult", "sweep", "BigramTask", "FeatureTask",
    "SequenceTask",
]
