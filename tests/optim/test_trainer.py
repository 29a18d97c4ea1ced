"""FairAdamW inside ``transformers.Trainer(optimizers=(opt, None))``: the parameters after a few steps equal
those of a plain loop with the same optimizer on the same data (an independent training loop).

float64 model, one full batch per step (so the Trainer's shuffling does not change the batch), constant
learning rate, no gradient clipping: the two loops perform the same floating-point operations up to the
order of reductions, so they agree to ~1e-12 (the tolerance, ~1e4 ulp for weights of order 1).
"""

import copy

import numpy as np
import pytest
import torch

from imbalance.lm.model import GPTConfig, build_gpt
from imbalance.optim.hooks import fair_adamw, token_row_params
from tests.lm._trainer_data import Windows

pytest.importorskip("accelerate")

V, T, N, STEPS = 48, 12, 6, 4


def _data():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, V // 2, (N, T), generator=gen)  # (N, T): rows ≥ V/2 of the embedding never looked up


def _optimizer(model, variant, probs):
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.5},
              {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    return fair_adamw(groups, token_row_params(model), variant, pi=probs, tokens_per_batch=N * (T - 1),
                      lr=1e-2)


@pytest.mark.parametrize("variant", ["row-scaled", "lazy-moments", "coupled"])
def test_fair_adamw_in_trainer_equals_plain_loop(variant, tmp_path):
    from transformers import Trainer, TrainingArguments

    data = _data()
    probs = np.bincount(data[:, 1:].reshape(-1).numpy(), minlength=V) / data[:, 1:].numel()
    model = build_gpt(GPTConfig(V, layers=1, width=16, heads=2, context=T, tied=False), seed=3).double()
    plain, init = copy.deepcopy(model), copy.deepcopy(model)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=N,
                             lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True,
                             learning_rate=1e-2)
    trainer = Trainer(model=model, args=args, train_dataset=Windows(data),
                      optimizers=(_optimizer(model, variant, probs), None))
    trainer.train()

    opt = _optimizer(plain, variant, probs)
    batch = [Windows(data)[i] for i in range(N)]
    x = torch.stack([b["input_ids"] for b in batch])                       # (N, T)
    y = torch.stack([b["labels"] for b in batch])                          # (N, T)
    for _ in range(STEPS):
        opt.zero_grad()
        plain(input_ids=x, labels=y).loss.backward()
        opt.step()
    theirs = dict(model.named_parameters())
    for name, p in plain.named_parameters():
        assert torch.allclose(theirs[name].detach(), p.detach(), rtol=0, atol=1e-12), name
    emb = plain.get_input_embeddings().weight.detach() - init.get_input_embeddings().weight.detach()  # (V, H)
    assert emb[: V // 2].abs().max() > 1e-3  # the optimizer moved the rows in the data
    if variant == "lazy-moments":
        assert emb[V // 2:].abs().max() == 0  # rows never looked up: no decay, no step
