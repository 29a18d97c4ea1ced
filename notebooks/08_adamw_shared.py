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
# # 08 — AdamW in a shared representation: the equilibrium on real text
#
# The exact results for shared representations (T5 UFM, T7 factored bigram) are optima of the
# L2-regularised loss. Models are trained with AdamW, whose decoupled decay and per-coordinate
# normalisation reach a different point: where, coordinate by coordinate,
# E[g]/(√E[g²] + ε) = −λθ (T10, `proofs/T10_adamw_shared.md`). Full batch and ε → 0 this is a KKT
# point of the loss in the box ‖θ‖_∞ ≤ 1/λ (Xie & Li 2024, arXiv 2404.04454); with minibatches of B
# samples the box shrinks per coordinate by ρ ≤ 1, and it shrinks most for the rows of rare tokens,
# whose gradient is mostly noise. So under AdamW a rare token's damage is set by how often it appears
# per batch (B·π), not by π/λ as under L2.
#
# Here the factored bigram LM (context embedding E, unembedding W, both decayed) learns the word
# tokens of the corpus the toolkit ships. The AdamW equilibrium is computed without training, from
# the same initialisation that training uses (`factored_bigram_adamw_equilibrium`), next to the L2
# optimum (`factored_bigram_equilibrium`), and both are put against AdamW runs.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from imbalance import plot
from imbalance.reproduce.adamw_shared import (
    bucket_comparison,
    damage_comparison,
    damage_markdown,
    damage_summary,
    equilibrium_buckets,
    lm_damage_rows,
    text_task,
    validation_rows,
    worst_error,
)
from imbalance.sim import sweep
from imbalance.sim.paradox import paradox_sweep_args, small_lm

FAST = bool(os.environ.get("IMBALANCE_FAST"))
V, WIDTH = (16, 4) if FAST else (32, 8)
task, source = text_task(V)
print(source)

# %% [markdown]
# ## The two equilibria against λ (theory only)
#
# Per-bucket loss (powers of 3, bucket 0 the most frequent) of the L2 optimum and of the AdamW
# equilibrium at two batch sizes. The same λ means different things: L2 decay pulls every weight
# by λθ against the raw gradient, AdamW's by λθ against a normalised one, so the L2 optimum has
# lost everything (uniform prediction) at decays where AdamW still predicts well.

# %%
lams = np.array([0.2, 0.4, 0.8])
ids, table = equilibrium_buckets(task, lams, width=WIDTH, batch_sizes=(8, 64))
lams_l2 = np.array([0.003, 0.01, 0.03, 0.1])
ids_l2, table_l2 = equilibrium_buckets(task, lams_l2, width=WIDTH, batch_sizes=())
fig, axs = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
plot.bucket_loss_vs_lambda(axs[0], lams_l2, table_l2["l2"], None, ids_l2)
axs[0].set_title("L2 optimum (T7)")
for ax, B in zip(axs[1:], (8, 64)):
    plot.bucket_loss_vs_lambda(ax, lams, table[B], None, ids)
    ax.set_title(f"AdamW equilibrium (T10), B = {B}")
axs[0].legend(fontsize=7)
fig.tight_layout()
for B in (8, 64):
    print(f"B = {B}: rare-minus-frequent gap", np.round(table[B][:, -1] - table[B][:, 0], 3), "at λ =", lams)
print("L2 at the same λ:", np.round(table["l2"][:, -1] - table["l2"][:, 0], 3))

# %% [markdown]
# ## Against AdamW training
#
# Batched AdamW runs of the same model (lr 1e-2, iterate average over the last quarter, seed means
# with 95 % confidence intervals). The AdamW line is the equilibrium of each seed's initialisation,
# averaged over seeds: no fitted parameter. The L2 line is what the T7 theory would have said.

# %%
steps, seeds = (1500, (0, 1)) if FAST else (10_000, (0, 1, 2))
rows = validation_rows(task, width=WIDTH, lams=(0.4, 0.8), batch_sizes=(64,), seeds=seeds, steps=steps, sgd=False)
fig, axs = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
for ax, lam in zip(axs, (0.4, 0.8)):
    bucket_comparison(ax, rows, 64, lam)
axs[0].legend(fontsize=7)
fig.tight_layout()
print(f"largest per-bucket error: AdamW theory {100 * worst_error(rows):.1f} %, "
      f"L2 theory {100 * worst_error(rows, 'l2'):.0f} %")

# %% [markdown]
# ## A transformer's damage, predicted without training
#
# The report's small transformer (one layer) learns a Zipfian lag-2 copy process under AdamW at
# λ = 0 and at three decays. The damage of decay is its training loss at λ minus its loss at λ = 0,
# per frequency bucket. The prediction is the AdamW equilibrium of a factored model of the
# transformer's width on the (token two positions back, next token) pairs of the same training data,
# with B = tokens per batch, minus the loss of those pairs' empirical law: the structure of the model
# is given, nothing is fitted to the runs. `residual` is the equilibrium's certificate: above 1e-10 the
# continuation did not settle, and the prediction is not certified.

# %%
lm_task, lm_model, lm_steps = small_lm(FAST)
lm_seeds = (0, 1) if FAST else (0, 1, 2)
lm_run = sweep(lm_task, [0.0, 0.1, 0.3, 1.0], progress=False,
               **paradox_sweep_args(lm_task, model=lm_model, steps=lm_steps, batch_size=16, lr=1e-2, seeds=lm_seeds,
                                    dtype=torch.float32))
damage = lm_damage_rows(lm_run, lm_task, lm_model, 16 * lm_task.seq_len, fast=FAST)
fig, ax = plt.subplots(figsize=(6, 3.8))
damage_comparison(ax, damage)
ax.legend(fontsize=6)
print(damage_summary(damage))
print(damage_markdown(damage))

# %% [markdown]
# `scripts/validate_adamw_shared.py --text` runs the full comparison (two batch sizes, three λ,
# three seeds, an SGD run beside it) and `--batch-question` the batch-size question at a fixed
# token budget, `--lm` the transformer comparison on the shipped corpus; `imbalance reproduce` puts the
# real-text table and the transformer comparison in the report.
