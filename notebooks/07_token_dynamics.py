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
# # 07 — Token dynamics: "not learned yet" or "taken away by decay"?
#
# A rare token's high loss after training has two sources: the optimiser has not got to it yet
# (rare tokens are learned late under gradient descent, Kunstner et al. 2024), and weight decay's
# equilibrium takes it away (T2, T3). For the bigram model both are predicted without sampling
# (`proofs/T11_token_dynamics.md`): `bigram_trajectory` integrates the SGD drift and the
# mean-field AdamW flow from the training start, and `sweep_loss_split` writes the final loss as
# Bayes + decay (equilibrium) + transient (still to go), next to the measured loss.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

from imbalance import plot
from imbalance.reproduce.dynamics import (
    bucket_curves,
    lm_gap_section,
    predicted_and_simulated,
    token_dynamics_runs,
)
from imbalance.reproduce.report import Settings
from imbalance.sim import sweep
from imbalance.theory.loss_split import sweep_loss_split

FAST = os.environ.get("IMBALANCE_FAST", "0") == "1"
plot.use_style()
task, lams, runs = token_dynamics_runs(fast=FAST)
seeds = 2 if FAST else 6
results = {opt: sweep(task, lams, seeds=tuple(range(seeds)), **kw) for opt, kw in runs.items()}
splits = {opt: sweep_loss_split(res, task) for opt, res in results.items()}

# %% [markdown]
# ## Per-bucket loss over training: simulation, prediction, equilibrium
#
# Points: the simulated per-bucket loss (mean over seeds; powers-of-3 frequency buckets, 0 = most
# frequent). Lines: the predicted curve, no fitted parameter. Dashed: the equilibrium at that λ,
# where the curve ends after many decay timescales.

# %%
for opt, res in results.items():
    steps, pred, sim = predicted_and_simulated(res, task)
    fig, axs = plt.subplots(1, len(lams), figsize=(14, 4), sharey=True)
    for i, ax in enumerate(axs):
        bucket_curves(ax, steps, pred[i], res.curve_steps, sim[i], splits[opt].bucket_equilibrium[i],
                      splits[opt].bucket_ids, title=f"{opt}, λ = {lams[i]:g}")
    axs[0].legend()
    plt.show()

# %% [markdown]
# ## The split of the final loss, per bucket
#
# `decay` = equilibrium − Bayes (what weight decay takes, or gives: in the one-hot model the decay
# pulls each context towards uniform, which can help rare *targets*); `transient` = predicted −
# equilibrium (what training has not done yet). Where |transient| > |decay| the remedy is to train
# longer, not to change λ.

# %%
for opt, s in splits.items():
    print(f"{opt}: steps {s.steps}")
    for i, lam in enumerate(s.lam):
        for b, bid in enumerate(s.bucket_ids):
            dom = "transient" if abs(s.bucket_transient[i, b]) > abs(s.bucket_decay[i, b]) else "decay"
            print(f"  λ={lam:<5g} bucket {bid}: Bayes {s.bucket_bayes[i, b]:.3f} + decay {s.bucket_decay[i, b]:+.3f}"
                  f" + transient {s.bucket_transient[i, b]:+.3f} = {s.bucket_predicted[i, b]:.3f}"
                  f"  (measured {s.bucket_measured[i, b]:.3f}; {dom} dominates)")

# %% [markdown]
# ## Learning speed, predicted
#
# The normalised area under each bucket's loss curve (1 = never moved, → 0 = learned at once),
# from the predicted curve and from the simulation.

# %%
for opt, s in splits.items():
    print(opt, "predicted", np.round(s.bucket_learning_speed, 3).tolist())
    print(opt, "measured ", np.round(s.bucket_measured_learning_speed, 3).tolist())

# %% [markdown]
# ## Reading the figures (full settings; the fast test run is shorter)
#
# SGD at lr 0.5: the decay timescale 1/(ηλ) is 2,000 steps at λ = 0.001 and 20 steps at λ = 0.1,
# so after 3,000 steps the curves sit on (or near) their equilibrium lines and the gap to the Bayes
# loss is decay's in every bucket; only at λ = 0.001 is a small transient left. AdamW at lr 1e-3:
# the timescale is 10⁶ steps at λ = 0.001, the curves are far from their equilibria, and the
# transient is most of what separates the buckets from the Bayes loss at λ ≤ 0.01 — there the
# remedy for a bucket's loss is more training, not another λ. A transient can be negative: in the
# one-hot model a context's prediction passes through over-weighting its rare targets on the way.
# The mean-field flow runs above the simulation for the rarest bucket (about 2 % here, 3.6 % at lr
# 3e-3: the finite-lr bias of contexts seen in fewer than one batch in two, quantified in
# `proofs/T11_token_dynamics.md`).

# %% [markdown]
# ## Vocabulary scaling: gradient descent against sign descent (Kunstner & Bach 2025)
#
# Their setting: the squared-loss linear bigram with Zipf(1) marginals and conditionals, from
# zeros. Iterations to reach a relative error ε against the vocabulary size d: gradient descent
# (step 1/π₁) grows almost linearly; sign descent with their step protocol (η = 1/(z t φ), φ
# tuned per budget) and their averaged dynamics (each oscillating coordinate counted at |e| = η/2)
# grows as √d, exactly as its closed form. The exact iterate oscillates: at even budgets every
# tail coordinate is back at 0 and only the head's error counts (almost flat in d), at odd budgets
# it sits at η (√d-like). With coupled L2 decay, gradient descent's count, measured from its own
# minimiser, stops growing with d: the decay removes the slow tail, and with it what the tail
# would learn (`l2_bias`). Full tables: `python -m imbalance.reproduce.scaling`.

# %%
from imbalance.reproduce.scaling import squared_loss_scaling_rows

ds = [100, 300, 1000] if FAST else [100, 300, 1000, 3000, 10000]
rows = squared_loss_scaling_rows(ds, eps_values=(0.01,)) + squared_loss_scaling_rows(ds, eps_values=(0.01,),
                                                                                      lam=1e-3)
fig, ax = plt.subplots(figsize=(6, 4))
for key, style in (("gd", "o-"), ("sign", "s-"), ("sign_even", "^--"), ("sign_odd", "v--")):
    pts = [(r["d"], r[key]) for r in rows if r["lam"] == 0 and r[key] > 0]
    ax.loglog(*zip(*pts), style, label=key)
ax.loglog(ds, [r["gd"] for r in rows if r["lam"] > 0], "o:", label="gd, L2 λ = 1e-3 (own minimiser)")
ax.loglog(ds, [r["sign_closed_form"] for r in rows if r["lam"] == 0], "k:", lw=0.8, label="½√((d−1)(1/(εH) − 1))")
ax.set_xlabel("vocabulary size d")
ax.set_ylabel("iterations to relative error 0.01")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## The split on the small LM's paradox run
#
# The small transformer of the paradox section, and the one-hot and factored bigram models trained on
# the same (previous token, next token) pairs with the same learning rate, tokens per batch and steps.
# For each λ and bucket: the LM's measured loss, the one-hot bigram's Bayes + decay + transient, the
# factored bigram's predicted loss (mean-field AdamW flow) = its AdamW equilibrium (T10, from the same
# start; not solved in the fast settings) + transient; `tail-head` rows are the rare-minus-frequent
# gaps. The section's text says what the numbers mean and where the bigram theories stop applying.

# %%
lm_gap = lm_gap_section(Settings(fast=FAST, seeds=1 if FAST else 3))
print(lm_gap.text, "\n")
keys = ["lam", "bucket", "lm_train", "lm_heldout", "bigram_bayes", "bigram_decay", "bigram_transient",
        "factored_predicted", "factored_equilibrium", "factored_transient"]
print("  ".join(f"{k:>12}" for k in keys))
for row in lm_gap.rows:
    print("  ".join(f"{row[k]:>12.3f}" if isinstance(row[k], float) else f"{row[k]:>12}" for k in keys))
