"""Step time of each FairAdamW variant against torch.optim.AdamW on the same GPT-style parameters.

Run: ``pytest -m benchmark tests/benchmarks/bench_fair_optim.py -s``. Parameters: a 32k-row token
embedding and a 32k-row unembedding of width D (64 on CPU, 768 on a GPU), L = 2 transformer blocks
(qkv, out, mlp in/out matrices, LayerNorm vectors), float32. Gradients are fixed: dense everywhere
except the token embedding, whose gradient is non-zero only on the rows of 8 × 128 batch tokens drawn
from Zipf(1) (as a batch would look up). Only ``step()`` is timed: the baseline and each variant run
interleaved in blocks of ``BLOCK`` steps in the same process, and the ratio is of medians over blocks.
Baseline: ``torch.optim.AdamW(fused=False)`` on CPU, ``fused=True`` on a GPU. Target: ratio ≤ 1.2.
"""

import time

import numpy as np
import pytest
import torch

from imbalance.optim import FairAdamW, row_decay_scale
from imbalance.zipf import zipf_pmf

pytestmark = pytest.mark.benchmark

V, L, BLOCK, ROUNDS = 32000, 2, 5, 8


def _gpt_params(D, device, gen):
    shapes = {"tok_emb": (V, D), "unembed": (V, D)}
    for i in range(L):
        shapes |= {f"qkv{i}": (3 * D, D), f"out{i}": (D, D), f"mlp_in{i}": (4 * D, D), f"mlp_out{i}": (D, 4 * D),
                   f"ln1_{i}": (D,), f"ln2_{i}": (D,)}
    params = {k: (0.02 * torch.randn(s, generator=gen)).to(device).requires_grad_() for k, s in shapes.items()}
    for _k, p in params.items():
        p.grad = 0.01 * torch.randn(p.shape, generator=gen).to(device)
    tokens = torch.multinomial(torch.as_tensor(zipf_pmf(V, 1.0)), 8 * 128, replacement=True, generator=gen)
    absent = torch.ones(V, dtype=torch.bool)
    absent[tokens] = False
    params["tok_emb"].grad[absent.to(device)] = 0.0
    counts = np.bincount(tokens.numpy(), minlength=V) + zipf_pmf(V, 1.0) * 1e6
    return params, counts


def _groups(params, emb_options, unembed_options):
    matrices = [p for k, p in params.items() if k not in ("tok_emb", "unembed") and p.dim() == 2]
    vectors = [p for k, p in params.items() if p.dim() == 1]
    return [{"params": [params["tok_emb"]], **emb_options}, {"params": [params["unembed"]], **unembed_options},
            {"params": matrices}, {"params": vectors, "weight_decay": 0.0}]


def _variants(counts):
    scale = row_decay_scale(counts, batch_size=8 * 128)
    return {"options off": ({}, {}), "row-scaled": ({"row_decay_scale": scale}, {"row_decay_scale": scale}),
            "lazy decay": ({"lazy": "decay"}, {}), "lazy moments": ({"lazy": "moments"}, {}),
            "coupled": ({"coupled": True}, {"coupled": True})}


def _time(opt, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(BLOCK):
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t) / BLOCK


@pytest.mark.parametrize("variant", ["options off", "row-scaled", "lazy decay", "lazy moments", "coupled"])
def test_step_time_ratio(variant):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    D = 768 if device.type == "cuda" else 64
    base_params, counts = _gpt_params(D, device, torch.Generator().manual_seed(0))
    our_params, _ = _gpt_params(D, device, torch.Generator().manual_seed(0))
    emb, unemb = _variants(counts)[variant]
    kw = dict(lr=1e-3, weight_decay=0.1)
    base = torch.optim.AdamW(_groups(base_params, {}, {}), fused=device.type == "cuda", **kw)
    ours = FairAdamW(_groups(our_params, emb, unemb), **kw)
    times = np.array([(_time(base, device), _time(ours, device)) for _ in range(ROUNDS)])[2:]  # 2 warm-up rounds
    b, o = np.median(times, axis=0)
    n_params = sum(p.numel() for p in our_params.values())
    print(f"\n{variant:13s} {device.type} D={D} params={n_params}: AdamW(fused={device.type == 'cuda'}) "
          f"{b * 1e3:.2f} ms, FairAdamW {o * 1e3:.2f} ms, ratio {o / b:.2f}")
    assert o / b <= 1.2, f"{variant}: {o / b:.2f}x torch.optim.AdamW"
