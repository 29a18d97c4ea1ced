"""Per-bucket and token-balanced evaluation loss inside a Hugging Face ``Trainer`` or a
hand-written loop.

``bucket_eval_metrics`` is the plain function: it evaluates a causal LM on windows of token
ids and returns ``{prefix}_aggregate_loss``, ``{prefix}_token_balanced_loss`` and
``{prefix}_bucket{b}_loss`` (b = 0 the most frequent bucket of ``pi``, the training
frequencies). ``BucketLossCallback`` runs it at every ``Trainer`` evaluation: the numbers are
added to the metrics ``trainer.evaluate()`` returns and, once the callback is attached with
``callback.attach(trainer)``, logged through ``trainer.log`` so they reach
``state.log_history`` and every logger the user configured (``report_to``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import TrainerCallback

from .losses import loss_summary, per_token_loss_sums

__all__ = ["bucket_eval_metrics", "BucketLossCallback"]


def bucket_eval_metrics(model, windows, pi, *, prefix: str = "eval", batch_size: int = 16,
                        scheme: str = "log3", device=None) -> dict[str, float]:
    """Loss metrics of ``model`` on ``windows`` (n, T+1) token ids (inputs ``w[:, :-1]``,
    targets ``w[:, 1:]``, the shift a causal LM's ``labels`` use)."""
    windows = torch.as_tensor(np.asarray(windows), dtype=torch.int64)
    if windows.ndim != 2 or windows.shape[1] < 2 or windows.shape[0] == 0:
        raise ValueError(f"windows must be a non-empty (n, T+1) array of token ids with T >= 1, got shape "
                         f"{tuple(windows.shape)}")
    pi = np.asarray(pi, dtype=np.float64)
    sums, counts = per_token_loss_sums(model, windows, pi.size, batch_size=batch_size, device=device)
    s = loss_summary(sums, counts, pi, scheme=scheme)
    out = {f"{prefix}_aggregate_loss": s["aggregate"], f"{prefix}_token_balanced_loss": s["token_balanced"]}
    out.update({f"{prefix}_bucket{b}_loss": v for b, v in enumerate(s["bucket_loss"]) if v is not None
                and math.isfinite(v)})
    return out


class BucketLossCallback(TrainerCallback):
    """Adds :func:`bucket_eval_metrics` to every ``Trainer`` evaluation (see the module docstring)."""

    def __init__(self, windows, pi, *, prefix: str = "eval", batch_size: int = 16, scheme: str = "log3"):
        self.windows = torch.as_tensor(np.asarray(windows), dtype=torch.int64)
        self.pi = np.asarray(pi, dtype=np.float64)
        self.prefix, self.batch_size, self.scheme = prefix, batch_size, scheme
        self._trainer = None

    def attach(self, trainer):
        """Register with ``trainer`` and log through it (its loggers see the metrics)."""
        trainer.add_callback(self)
        self._trainer = trainer
        return self

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        m = bucket_eval_metrics(model, self.windows, self.pi, prefix=self.prefix,
                                batch_size=self.batch_size, scheme=self.scheme)
        if metrics is not None:
            metrics.update(m)
        if self._trainer is not None:
            self._trainer.log(m)
        else:
            state.log_history.append({**m, "step": state.global_step})
        return control
