"""The small-LM training loop with FairAdamW (options off) against torch.optim.AdamW on the same batches."""

import numpy as np
import torch
import torch.nn.functional as F

from imbalance.optim.lm import lm_outcome, train_lm
from imbalance.sim.paradox import small_lm


def _reference(task, model, lam, steps, batch_size, lr, seed):
    """One model, torch.optim.AdamW, decay groups as in the model's ``decayed``."""
    gen = torch.Generator().manual_seed(seed)
    params = {k: v.clone().requires_grad_() for k, v in model.init(task, [gen], torch.float64).items()}  # (1, ...)
    groups = [{"params": [p for k, p in params.items() if k in model.decayed], "weight_decay": lam},
              {"params": [p for k, p in params.items() if k not in model.decayed], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, foreach=False)
    for _ in range(steps):
        x, y = task.sample(gen, batch_size)                                     # (B, T) each
        logits = model.logits(params, x[None], task)                            # (1, B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach()[0] for k, v in params.items()}


def test_train_lm_options_off_is_torch_adamw():
    task, model, _ = small_lm(fast=True)
    ours = train_lm(task, model, 0.3, steps=8, batch_size=4, lr=1e-2, seeds=(0, 1), dtype=torch.float64)
    for i, seed in enumerate((0, 1)):
        ref = _reference(task, model, 0.3, 8, 4, 1e-2, seed)
        for k, v in ref.items():
            assert torch.allclose(ours[k][i], v, rtol=0, atol=1e-10), k


def test_lm_outcome_fields_are_per_seed_and_finite():
    task, model, _ = small_lm(fast=True)
    params = train_lm(task, model, 0.1, steps=3, batch_size=4, lr=1e-2, seeds=(0, 1), variant={"lazy": "moments"})
    out = lm_outcome("lazy moments", 0.1, task, model, params)
    for f in ("train_aggregate", "heldout_aggregate", "train_tail", "heldout_tail", "train_ece", "heldout_ece"):
        v = getattr(out, f)
        assert v.shape == (2,) and np.isfinite(v).all(), f
    assert (out.heldout_tail > out.heldout_aggregate).all()  # rare tokens, barely trained: above the average
