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
# # 04 — Factored models: minority collapse and the paradox, solved exactly
#
# In one-hot models weight decay acts per context and flattens predictions (notebooks 01,
# 02). With a *shared representation* it acts through the target token: two factors that
# are both decayed, W (unembeddings) and H or E (features or embeddings), amount to a
# nuclear-norm penalty on the logit matrix (`proofs/T5_unconstrained_features.md`,
# `proofs/T7_factored_bigram.md`), which removes low-energy directions first.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from imbalance import frequency_buckets, metrics, plot
from imbalance.corpus import bigram_counts, zipf_successor_stream
from imbalance.theory import factored_bigram_equilibrium, minority_collapse_threshold, minority_cosine

FAST = os.environ.get("IMBALANCE_FAST", "0") == "1"
plot.use_style()

# %% [markdown]
# ## The unconstrained-features model: minority collapse
#
# Five majority and five minority classes; R is the frequency ratio. With weight decay
# the minority classifiers merge exactly, at a finite R that falls with λ.

# %%
R = np.logspace(0, 3.5, 8 if FAST else 20)
fig, ax = plt.subplots(figsize=(6, 4))
for lam in (0.03, 0.1) if FAST else (0.01, 0.03, 0.1):
    cos, _, _ = minority_cosine(5, 5, R, lam, lam)
    thr = minority_collapse_threshold(5, 5, lam, lam, rel_precision=1e-2)
    ax.plot(R, cos, "o-", ms=3, label=f"λ = {lam:g}: collapse at R ≈ {thr:.3g}")
ax.set_xscale("log")
ax.set_xlabel("imbalance ratio R")
ax.set_ylabel("cosine between minority classifiers")
ax.legend()
plt.show()

# %% [markdown]
# ## The factored bigram LM on a token stream: the paradox without training
#
# Every token of this synthetic stream is predictable from the previous one (it follows
# its successor half of the time), so rare tokens have something to lose.

# %%
V, n = (80, 50_000) if FAST else (300, 1_000_000)
C = bigram_counts(zipf_successor_stream(V, n, np.random.default_rng(0)), V)
lams = np.array([3e-4, 1e-3, 3e-3]) if FAST else np.array([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
eq = factored_bigram_equilibrium(C, lams, lams, rtol=1e-7)
ids, bl = metrics.bucket_loss(eq.loss_per_token, eq.token_frequency)
fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
plot.bucket_loss_vs_lambda(axs[0], lams, bl, None, ids)
plot.aggregate_vs_balanced(axs[1], lams, eq.aggregate_loss, eq.token_balanced_loss)
plt.show()
sizes = np.bincount(frequency_buckets(eq.token_frequency)[frequency_buckets(eq.token_frequency) >= 0])
print("tokens per bucket:", sizes.tolist())
print("loss increase per bucket from the smallest to the largest λ:", np.round(bl[-1] - bl[0], 3).tolist())
