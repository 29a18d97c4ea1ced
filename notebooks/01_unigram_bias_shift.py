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
# # 01 — How weight decay shifts the logit bias (the unigram model, T1)
#
# The simplest softmax model of a language is a bias vector b over the vocabulary,
# trained with cross-entropy on token frequencies π. With L2 weight decay λ its exact
# minimiser is known in closed form (Wright ω; see `proofs/T1_unigram.md`):
#
# $$p_k = \lambda\,\omega(\pi_k/\lambda - t),\qquad \lambda b = \pi - p,\qquad \textstyle\sum_k b_k = 0.$$
#
# This notebook shows what that formula says about rare tokens.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from imbalance import metrics, plot, unigram_equilibrium, zipf_pmf

FAST = os.environ.get("IMBALANCE_FAST", "0") == "1"
plot.use_style()
K = 2_000 if FAST else 20_000
pi = zipf_pmf(K, 1.1)
lams = np.logspace(-6, 2, 40 if FAST else 120)
eq = unigram_equilibrium(pi, lams)
print(f"K = {K}, {lams.size} weight decays from {lams[0]:g} to {lams[-1]:g}")

# %% [markdown]
# ## The bias is squeezed from the logit-adjustment prior towards zero
#
# At λ → 0 the logits are the prior log π − mean(log π); the first-order shift is
# ∂b_k/∂λ = −b⁰_k/π_k + mean(b⁰/π), amplified by 1/π for rare tokens; at large λ,
# b_k ≈ (π_k − 1/K)/λ. The dotted and dashed lines are those asymptotes.

# %%
fig, ax = plt.subplots(figsize=(6, 4))
plot.unigram_bias_shift(ax, pi, lams, tokens=(0, 99, K - 1))
ax.set_title("unigram logits vs weight decay (exact)")
plt.show()

# %% [markdown]
# ## Who loses: frequent tokens lose probability, rare tokens gain it
#
# λ b = π − p, and b keeps the frequency order, so p − π changes sign exactly once along
# the ranks: the head loses probability mass, the tail gains it. In a one-hot model the
# decay *flattens* the prediction — it does not by itself hurt rare tokens.

# %%
sel = [np.searchsorted(lams, v) for v in (1e-4, 1e-3, 1e-2, 1e-1)]
fig, ax = plt.subplots(figsize=(6, 4))
plot.loss_vs_frequency(ax, pi, eq.loss_per_token[sel], lams[sel])
plt.show()
sign_changes = [int(np.count_nonzero(np.diff(np.sign(eq.probs[i] - pi)))) for i in range(lams.size)]
print("sign changes of p − π along the ranks, per λ:", sorted(set(sign_changes)))

# %% [markdown]
# ## The average hides it
#
# The aggregate loss Σ π_k ℓ_k rises with λ, while the token-balanced loss (mean over
# types) *falls*: in this model the decay helps the tail at the expense of the head.
# The paradox of Pinto et al. (2024) needs a shared representation (notebook 04).

# %%
fig, ax = plt.subplots(figsize=(6, 4))
plot.aggregate_vs_balanced(ax, lams, eq.aggregate_loss, eq.token_balanced_loss)
plt.show()
_, per_bucket = metrics.bucket_loss(eq.loss_per_token[sel], pi, "log3", weighting="types")  # (4, n_buckets)
for i, row in zip(sel, per_bucket):
    print(f"λ = {lams[i]:8.0e}: head bucket {row[0]:.3f}, tail bucket {row[-1]:.3f}")
