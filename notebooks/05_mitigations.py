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
# (Menon et al. 2021): subtract τ log π from the logits of an already trained model. Each
# trades fairness against the aggregate loss and against calibration.

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from imbalance import bigram_equilibrium, margin_law, metrics, plot, zipf_pmf
from imbalance.corpus import bigram_counts, zipf_markov_stream
from imbalance.sim.paradox import paradox_calibration, paradox_sweep, posthoc_adjusted, small_lm

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
# ## (c) In theory: post-hoc adjustment is exact without decay, and over-corrects with it
#
# The token-balanced loss is minimised by p(v|x) ∝ q(v|x)/π_v: the τ = 1 adjustment of the Bayes
# predictor (T6c). A decayed model is not Bayes. On an exactly solved bigram model of a Zipfian
# stream, the best τ for the token-balanced loss moves away from 1 as λ grows under L2.

# %%
V, n = (200, 100_000) if FAST else (500, 1_000_000)
C = bigram_counts(zipf_markov_stream(V, n, s=1.1, sharpness=3.0, seed=0), V)
freq = np.asarray(C.sum(axis=0)).ravel()
taus = np.linspace(0.0, 1.5, 7)
for opt in ("sgd", "adamw"):
    for lam in (1e-4, 1e-3, 1e-2):
        eq = bigram_equilibrium(C, lam, optimizer=opt, batch_size=256)
        bal = [eq.logit_adjusted(t).token_balanced_loss for t in taus]
        tv = metrics.marginal_calibration_error(eq.predicted_marginal(), freq)
        print(f"{opt:5s} λ={lam:g}: best τ = {taus[int(np.argmin(bal))]:.2f} "
              f"(token-balanced {min(bal):.3f} vs {bal[0]:.3f} unadjusted); marginal TV {tv:.3f}")

# %% [markdown]
# ## (b, c) In a small language model: what reweighting, row decay and post-hoc adjustment buy and cost

# %%
task, model, steps = small_lm(FAST)
lams = (0.0, 0.3, 1.0)
runs, cals = {}, {}
for name, mitigation in (("AdamW", None), ("1/π reweighting", "reweight"), ("row decay ∝ ρ", "row_decay")):
    p = paradox_sweep(task, lams, model=model, steps=steps, batch_size=16, lr=1e-2, seeds=(0, 1, 2),
                      dtype=torch.float32, mitigation=mitigation, progress=False)
    runs[name], cals[name] = (p.aggregate, p.gap), paradox_calibration(p, model, task)
    if mitigation is None:
        adj = posthoc_adjusted(p, model, task, 1.0)  # same models, logits − log π
        runs["post-hoc τ = 1"] = (adj.aggregate, adj.gap)
        cals["post-hoc τ = 1"] = paradox_calibration(p, model, task, tau=1.0)
fig, ax = plt.subplots(figsize=(6, 4))
plot.fairness_vs_aggregate(ax, runs, lams)
plt.show()
for name, (agg, gap) in runs.items():
    print(f"{name:18s} aggregate {np.round(agg, 3).tolist()}  tail − head {np.round(gap, 2).tolist()}  "
          f"ECE {np.round(cals[name]['ece'], 3).tolist()}")
