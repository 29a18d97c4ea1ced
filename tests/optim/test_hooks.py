"""The optimizer hook of the real-LM pipeline: variant names, groups, and a check against torch.optim.AdamW."""

import numpy as np
import pytest
import torch

from imbalance.lm.model import GPTConfig, build_gpt, param_groups
from imbalance.lm.train import TrainConfig
from imbalance.optim import FairAdamW
from imbalance.optim.hooks import OPTIMIZERS, fair_adamw, token_row_params, variant_options
from imbalance.theory.fair_decay import row_decay_scale

pytest.importorskip("transformers")

V = 40


def _train(model, opt, steps=5):
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randint(0, V // 2, (4, 9), generator=gen)             # (B, T+1): half the rows never looked up
        opt.zero_grad()
        model(input_ids=x[:, :-1], labels=x[:, 1:]).loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("tied", [True, False])
def test_token_rows_get_their_own_group(tied):
    model = build_gpt(GPTConfig(V, layers=1, width=16, heads=2, context=8, tied=tied))
    probs = np.arange(1, V + 1, dtype=float)
    opt = fair_adamw(param_groups(model, 0.3), token_row_params(model), "row-scaled", pi=probs,
                     tokens_per_batch=32, lr=1e-3)
    rows = [g for g in opt.param_groups if g["row_decay_scale"] is not None]
    assert len(rows) == 1 and len(rows[0]["params"]) == (1 if tied else 2) and rows[0]["weight_decay"] == 0.3
    want = row_decay_scale(probs, batch_size=32).astype(np.float32)  # stored in the parameters' dtype
    assert np.array_equal(rows[0]["row_decay_scale"].numpy(), want)
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())            # every parameter once


def test_tied_lazy_decay_is_adamw():
    """With tied embeddings every row gets gradient through the unembedding, so lazy decay and lazy moments
    are plain AdamW (float64, torch.optim.AdamW as the reference)."""
    make = lambda: build_gpt(GPTConfig(V, layers=1, width=16, heads=2, context=8, tied=True), seed=1).double()  # noqa: E731
    ref = make()
    want = _train(ref, torch.optim.AdamW(param_groups(ref, 0.3), lr=1e-2, foreach=False))
    for variant in ("lazy-decay", "lazy-moments"):
        m = make()
        got = _train(m, fair_adamw(param_groups(m, 0.3), token_row_params(m), variant, lr=1e-2))
        for k, v in want.items():
            assert torch.allclose(got[k], v, rtol=0, atol=1e-12), (variant, k)


def test_untied_lazy_moments_leave_unseen_rows_alone():
    m = build_gpt(GPTConfig(V, layers=1, width=16, heads=2, context=8, tied=False), seed=1).double()
    before = m.get_input_embeddings().weight.detach().clone()
    after = _train(m, fair_adamw(param_groups(m, 0.3), token_row_params(m), "lazy-moments", lr=1e-2))
    emb = after["transformer.wte.weight"]                                 # (V, H)
    assert torch.equal(emb[V // 2:], before[V // 2:]) and not torch.equal(emb[: V // 2], before[: V // 2])


def test_variant_options_and_config_validation():
    assert set(OPTIMIZERS) == {"adamw", "row-scaled", "lazy-decay", "lazy-moments", "coupled"}
    assert variant_options("adamw") == {} and variant_options("coupled") == {"coupled": True}
    assert isinstance(fair_adamw([{"params": [torch.zeros(2, requires_grad=True)]}], [], "adamw"), FairAdamW)
    with pytest.raises(ValueError, match="optimizer"):
        variant_options("sgd")
    with pytest.raises(ValueError, match="pi"):
        variant_options("row-scaled", tokens_per_batch=8)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lazy")
    assert TrainConfig(optimizer="coupled").optimizer == "coupled"


def test_lm_train_optimizer_flag():
    import argparse

    from imbalance.lm.cli import add_lm_commands

    parser = argparse.ArgumentParser()
    add_lm_commands(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["lm", "train", "--optimizer", "lazy-moments"]).optimizer == "lazy-moments"
    assert parser.parse_args(["lm", "train"]).optimizer == "adamw"
    with pytest.raises(SystemExit):
        parser.parse_args(["lm", "train", "--optimizer", "sgd"])


def test_stored_config_of_plain_adamw_runs_is_unchanged():
    """Runs stored before ``TrainConfig.optimizer`` existed keep their identity: plain AdamW omits the field."""
    from imbalance.lm.train import config_dict

    assert "optimizer" not in config_dict(TrainConfig())
    assert config_dict(TrainConfig(optimizer="coupled"))["optimizer"] == "coupled"
