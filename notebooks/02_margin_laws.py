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
# # 02 — Margin laws under SGD and AdamW (T2, T3)
#
# In the deterministic bigram task, context k is always followed by token k and appears
# with probability π_k. Under L2/SGD the margin of class k solves
# m (eᵐ + K − 1) = κ'(K − 1), κ' ∝ π r²/λ (`proofs/T2_bigram.md`): the loss depends on
# frequency and weight decay **only through π r²/λ**. Under AdamW with decoupled decay
# the equilibrium is different (`proofs/T3_adamw.md`): m = 2rρ/λ with
# ρ = √(Bπ/(1 + (B − 1)π)) as ε → 0 — the unfairness is set by **Bπ, tokens per batch**.

# %%
import os

import matplotlib.pyplot as plt

from imbalance import margin_law, plot, zipf_pmf

FAST = os.environ.get("IMBALANCE_FAST", "0") == "1"
plot.use_style()
K = 64
pi = zipf_pmf(K, 1.2)
lams = [1e-3, 1e-2, 1e-1]

# %% [markdown]
# ## SGD: one curve for all λ
#
# Plotting each class's loss against π r²/λ, the three weight decays fall on one curve.

# %%
fig, axs = plt.subplots(1, 2, figsize=(10, 4))
plot.margin_collapse(axs[0], pi, lams)
axs[0].set_title("SGD + L2: loss vs π r²/λ")
plot.margin_collapse(axs[1], pi, lams, optimizer="adamw", batch_size=64, eps=0.0)
axs[1].set_title("AdamW (B = 64, ε → 0): loss vs rρ/λ")
plt.show()

# %% [markdown]
# ## AdamW: tokens seen at least once per batch are treated alike
#
# With ε → 0, ρ ≈ 1 when Bπ ≫ 1, so all such classes get the same margin 2r/λ; only
# classes rarer than about one occurrence per batch fall behind, with m ∝ √(Bπ)/λ.
# A larger batch moves that line down the frequency ranks.

# %%
fig, ax = plt.subplots(figsize=(6, 4))
for B in (8, 64, 512):
    m = margin_law(pi, 0.1, optimizer="adamw", batch_size=B, eps=0.0).margins
    ax.plot(B * pi, m, "o-", ms=3, label=f"B = {B}")
ax.set_xscale("log")
ax.set_xlabel("B π (occurrences per batch)")
ax.set_ylabel("margin at λ = 0.1")
ax.axvline(1.0, color="gray", lw=0.8)
ax.legend()
plt.show()

# %% [markdown]
# ## Adam's ε caps the margins
#
# With ε > 0 the decoupled decay balances E g/(√E g² + ε): once the other classes'
# probabilities fall below about ε, the gradient no longer dominates ε and the margin
# stops growing. At λ = 1e-3 the ε → 0 law would give head margins near 2000.

# %%
for eps in (0.0, 1e-12, 1e-8, 1e-4):
    m = margin_law(pi, 1e-3, optimizer="adamw", batch_size=64, eps=eps).margins
    print(f"ε = {eps:7.0e}: margins of classes 1, 8, 64 = {m[0]:8.2f} {m[7]:8.2f} {m[63]:8.2f}")
