# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 — Mitigations and their price (T6)
#
# Three remedies: (a) frequency-scaled decay — per-context (or per-row) decay ∝ P(x) under
# L2 equalises κ = P r²/λ and hence the margins (`proofs/T6_mitigations.md`); (b) loss
# reweighting by 1/π (token-balanced cross-entropy); (c) post-hoc logit adjustment
# (Menon et al. 2021, not treated here). Each trades fairness against the aggregate loss.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from imbalance import margin_law, plot, zipf_pmf
from imbalance.sim.paradox import paradox_sweep, small_lm

FAST = os.environ.get("IMBALANCE_FAST", "0") == "1"
plot.use_style()

# %% [markdown]
# ## (a) In theory: scaled decay equalises the margins of the deterministic bigram
#
# Under L2 the margin depends on π r²/λ only (T2), so a per-context decay λ_k = λ₀ K π_k
# gives every class the same margin.

# %%
pi = zipf_pmf(64, 1.2)
uniform = margin_law(pi, 0.01).margins
scaled = np.array([margin_law(pi, 0.01 * 64 * p).margins[k] for k, p in enumerate(pi)])
print(f"uniform decay: margins from {uniform.min():.3f} to {uniform.max():.3f}")
print(f"scaled decay:  margins from {scaled.min():.3f} to {scaled.max():.3f}")

# %% [markdown]
# ## (b) In a small language model: what reweighting and row decay buy and cost

# %%
task, model, steps = small_lm(FAST)
lams = (0.0, 0.3, 1.0)
runs = {}
for name, mitigation in (("AdamW", None), ("1/π reweighting", "reweight"), ("row decay ∝ ρ", "row_decay")):
    p = paradox_sweep(task, lams, model=model, steps=steps, batch_size=16, lr=1e-2, seeds=(0, 1, 2),
                      dtype=torch.float32, mitigation=mitigation, progress=False)
    runs[name] = (p.aggregate, p.gap)
fig, ax = plt.subplots(figsize=(6, 4))
plot.fairness_vs_aggregate(ax, runs, lams)
plt.show()
for name, (agg, gap) in runs.items():
    print(f"{name:18s} aggregate {np.round(agg, 3).tolist()}  tail − head {np.round(gap, 2).tolist()}")
