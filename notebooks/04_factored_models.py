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
# the minority classifiers merge exactly, at the closed-form ratio
# R* = (1/(λ_Wλ_H) − K_B)/K_A of T8 (`proofs/T8_collapse_law.md`), marked by the dotted lines.

# %%
R = np.logspace(0, 3.5, 8 if FAST else 20)
fig, ax = plt.subplots(figsize=(6, 4))
lams = np.array([0.03, 0.1] if FAST else [0.01, 0.03, 0.1])
collapse = minority_cosine(5, 5, R, lams, lams)  # every field is (λ, R)
for lam, cos in zip(lams, collapse.cosine):
    thr = minority_collapse_threshold(5, 5, lam, lam)
    line, = ax.plot(R, cos, "o-", ms=3, label=f"λ = {lam:g}: R* = {thr:.4g}")
    ax.axvline(thr, ls=":", color=line.get_color())
ax.set_xscale("log")
ax.set_xlabel("imbalance ratio R")
ax.set_ylabel("cosine between minority classifiers")
ax.legend()
plt.show()

# %% [markdown]
# ## The collapse boundary (T8)
#
# A group of ≥ 2 equally frequent classes merges iff its frequency π_B ≤ λ_Wλ_H (UFM, with or
# without a bias); in the factored LM's copy family iff π_B ≤ √(λ_Wλ_E) (one decay λ of a tied
# matrix: π_B ≤ λ/2). Below: the line π_B = λ_Wλ_H and, for drawn (K_A, K_B, λ_W, λ_H), the
# certified solver at R/R* = 0.99 (open: distinct) and 1.01 (filled: merged).

# %%
rng = np.random.default_rng(0)
fig, ax = plt.subplots(figsize=(5.5, 4))
for _ in range(6 if FAST else 30):
    ka, kb = int(rng.integers(1, 5)), int(rng.integers(2, 5))
    lw, lh = 10 ** rng.uniform(-2, -0.5, 2)
    Rs = minority_collapse_threshold(ka, kb, lw, lh)
    if Rs * 0.99 < 1:
        continue
    for f in (0.99, 1.01):
        merged = 1 - minority_cosine(ka, kb, Rs * f, lw, lh, rtol=1e-11).cosine <= 1e-9
        ax.plot(lw * lh, 1 / (ka * Rs * f + kb), "o", ms=5, mfc="C0" if merged else "none", mec="C0")
x = np.logspace(-4, -1, 50)
ax.plot(x, x, "k-", lw=1, label="π_B = λ_Wλ_H")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("λ_W λ_H")
ax.set_ylabel("minority frequency π_B")
ax.legend()
plt.show()

# %% [markdown]
# Per-token loss ceilings (T9, `proofs/T9_loss_ceilings.md`): at the optimum every class has
# ℓ_k ≤ −log(1 − μ√((K−1)/(Kπ_k))), μ = √(λ_Wλ_H); frequent classes sit within ~1–2 % of it,
# rare ones have no ceiling at all.

# %%
from imbalance.theory import ufm_equilibrium, ufm_loss_ceiling
from imbalance.zipf import zipf_pmf

pi = zipf_pmf(30, 1.0)
lam = 1e-2
eq = ufm_equilibrium(pi, lam, lam)
ceiling = ufm_loss_ceiling(pi, lam, lam).ceiling
ids = frequency_buckets(pi)
for b in np.unique(ids):
    sel = ids == b
    print(f"bucket {b} ({sel.sum():2d} classes): loss / ceiling = {np.mean(eq.loss_per_token[sel] / ceiling[sel]):.4f}")

# %% [markdown]
# ## The factored bigram LM on a token stream: the paradox without training
#
# Every token of this synthetic stream is predictable from the previous one (it follows
# its successor half of the time), so rare tokens have something to lose. Embedding and
# unembedding are separate matrices, each decayed by λ (penalty λ‖Z‖_*). A *tied* model (one
# matrix for both, as in GPT-2) has one decay: `factored_bigram_equilibrium(C, lam=λ, tied=True)`,
# penalty (λ/2) tr Z.

# %%
V, n = (80, 50_000) if FAST else (300, 1_000_000)
C = bigram_counts(zipf_successor_stream(V, n, seed=0), V)
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
