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
# # 03 — The paradox in a small language model
#
# Pinto et al. (2024) trained LMs with AdamW and found that as weight decay grows the loss
# of rare tokens rises much more than that of frequent ones, while the average loss barely
# moves. Here a small decoder-only transformer learns a Zipfian lag-k copy process
# (`imbalance.sim.SequenceTask`: every token, rare ones included, is predictable from k
# positions back), with AdamW, several seeds, and held-out evaluation.

# %%
import os

import matplotlib.pyplot as plt
import torch

from imbalance import plot
from imbalance.sim.paradox import paradox_sweep, small_lm, tokens_per_batch_sweep

FAST = os.environ.get("IMBALANCE_FAST", "0") == "1"
plot.use_style()
task, model, steps = small_lm(FAST)
lams = (0.0, 0.1, 0.3, 1.0)
common = dict(model=model, lr=1e-2, seeds=(0, 1, 2), dtype=torch.float32, progress=False)
print(f"V = {task.V}, Bayes loss {task.bayes_loss:.3f} nats per token")

# %% [markdown]
# ## Held-out loss per frequency bucket (powers of 3, as the paper)

# %%
res = paradox_sweep(task, lams, steps=steps, batch_size=16, **common)
fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
plot.bucket_loss_vs_lambda(axs[0], res.lams, res.bucket_loss, res.bucket_loss_ci, res.buckets)
plot.aggregate_vs_balanced(axs[1], [max(v, 1e-3) for v in res.lams], res.aggregate, res.token_balanced)
axs[1].set_xlabel("weight decay λ (λ = 0 drawn at 1e-3)")
plt.show()
for i, lam in enumerate(res.lams):
    print(f"λ = {lam:4.1f}: aggregate {res.aggregate[i]:.3f} ± {res.aggregate_ci[i]:.3f}, "
          f"token-balanced {res.token_balanced[i]:.3f} ± {res.token_balanced_ci[i]:.3f}, "
          f"tail − head {res.gap[i]:.2f} ± {res.gap_ci[i]:.2f}")
print(f"{res.below_line:.0%} of the vocabulary is seen less than once per batch of {res.tokens_per_batch} tokens")

# %% [markdown]
# ## Tokens per batch (an analogy with T3, not a prediction)
#
# T3 is a theorem about the *one-hot* bigram model under AdamW: there the equilibrium margin
# of context k is 2rρ_k/λ with ρ_k = √(Bπ_k/(1 + (B−1)π_k)), so a token seen once per batch
# keeps ρ = 0.71 of the head margin, one seen ten times 0.95, and the law needs many
# occurrences inside the β₂ window (Bπ/(1 − β₂) ≫ 1, `proofs/T3_adamw.md`). A transformer
# shares its parameters across tokens, so none of this is derived for it. What T3 suggests by
# analogy — and this cell only measures — is that the damage done by decay might shrink as the
# number of tokens per batch grows. Here the token budget is fixed and λ ∈ {0, 1}.

# %%
budget = 16 * 16 * steps
for p in tokens_per_batch_sweep(task, 1.0, [4, 16, 64], token_budget=budget, **common):
    print(f"{p.tokens_per_batch:5d} tokens/batch: gap(λ=1) − gap(λ=0) = {p.gap[1] - p.gap[0]:+.2f} "
          f"(± {p.gap_ci[1]:.2f}), {p.below_line:.0%} of types below one per batch")
