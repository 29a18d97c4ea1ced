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
from imbalance.metrics import bucket_loss
from imbalance.sim import BigramTable, BigramTask, sweep
from imbalance.theory.dynamics import bigram_trajectory
from imbalance.theory.loss_split import sweep_loss_split

FAST = os.environ.get("IMBALANCE_FAST", "0") == "1"
plot.use_style()
task = BigramTask.stochastic_zipf(32, 1.0, 0.7)
lams = [0.001, 0.01, 0.1]
steps, seeds = (600, 2) if FAST else (3000, 6)
runs = {"sgd": dict(lr=0.5), "adamw": dict(lr=3e-3)}
results = {opt: sweep(task, lams, model=BigramTable(), optimizer=opt, steps=steps, batch_size=64,
                      seeds=tuple(range(seeds)), eval_every=steps // 30, progress=False, **kw)
           for opt, kw in runs.items()}
splits = {opt: sweep_loss_split(res, task) for opt, res in results.items()}

# %% [markdown]
# ## Per-bucket loss over training: simulation, prediction, equilibrium
#
# Dots: the simulated per-bucket loss (mean over seeds; powers-of-3 frequency buckets, 0 = most
# frequent). Lines: the predicted curve, no fitted parameter. Dashed: the equilibrium at that λ,
# where the curve ends after many decay timescales.

# %%
pi = task.token_probs
for opt, res in results.items():
    traj = bigram_trajectory(task.counts, lams, steps=steps, lr=res.lr, optimizer=opt, batch_size=64,
                             eval_every=steps // 30)
    _, sim = bucket_loss(res.curve_loss_per_token.mean(2), pi)  # (n_eval, L, n_b)
    _, pred = bucket_loss(traj.loss_per_token, pi)  # (L, n_eval, n_b)
    sp_ = splits[opt]
    fig, axs = plt.subplots(1, len(lams), figsize=(14, 4), sharey=True)
    for i, (ax, lam) in enumerate(zip(axs, lams)):
        for b in range(pred.shape[-1]):
            color = f"C{b}"
            ax.plot(traj.steps, pred[i, :, b], color=color, label=f"bucket {sp_.bucket_ids[b]}")
            ax.plot(res.curve_steps, sim[:, i, b], "o", color=color, ms=3)
            ax.axhline(sp_.bucket_equilibrium[i, b], color=color, ls="--", lw=0.8)
        ax.set_title(f"{opt}, λ = {lam}")
        ax.set_xlabel("step")
    axs[0].set_ylabel("bucket loss (nats)")
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
# loss is decay's in every bucket; only at λ = 0.001 is a small transient left. AdamW at lr 3e-3:
# the timescale is 330,000 steps at λ = 0.001, the curves are far from their equilibria, and the
# transient is most of what separates the buckets from the Bayes loss at λ ≤ 0.01 — there the
# remedy for a bucket's loss is more training, not another λ. A transient can be negative: in the
# one-hot model a context's prediction passes through over-weighting its rare targets on the way.
# The mean-field flow runs slightly above the simulation for the rarest bucket (the finite-lr
# bias quantified in `proofs/T11_token_dynamics.md`).
