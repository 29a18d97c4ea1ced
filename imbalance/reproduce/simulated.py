"""Report sections that train models (imbalance.sim) and put them next to the theory:
T2/T3 margins and per-bucket losses, the T4 norm bound, and the paradox in a small LM."""

from __future__ import annotations

import numpy as np
import torch

from .. import metrics, plot
from .._progress import progress_bar
from ..sim import BigramTable, BigramTask, FeatureTask, LinearSoftmax
from ..sim.devices import resolve_device
from ..sim.paradox import paradox_calibration, paradox_sweep_args, posthoc_adjusted, small_lm, summarise_paradox
from ..sim.validate import compare_bigram, compare_margins, feature_lbfgs
from . import configs
from .adamw_shared import context_counts, damage_comparison, damage_markdown, damage_summary, lm_damage_rows
from .exact import text_tokens
from .report import Check, Section, Settings

__all__ = ["margin_sim_section", "bigram_sim_section", "feature_section", "lm_paradox_section"]


def _plt():
    from .exact import _figure

    return _figure()


def _submit(st, name, task, run: configs.BigramRun, seeds):
    """A bigram-table sweep (checkpointed every fifth of the run), started through ``st.runner``."""
    kw = run.sweep_kwargs(seeds) | dict(eval_every=run.steps // 5)
    return st.submit(name, task, list(run.lams), model=BigramTable(), **kw)


def margin_sim_section(st: Settings) -> Section:
    """Deterministic bigram K = 64, s = 1.2: trained margins (iterate average over the second
    half, seed mean) vs margin_law, SGD + L2 within 2 %, AdamW (B = 64, ε = 1e-8) within 3 %."""
    plt = _plt()
    task = BigramTask.deterministic_zipf(**configs.MARGIN_TASK)
    seeds = max(4, st.seeds) if st.fast else max(8, st.seeds)  # SE of the seed mean well below the tolerance
    runs = {"sgd": (configs.MARGINS_SGD, 0.02),
            "adamw": (configs.MARGINS_ADAMW_FAST if st.fast else configs.MARGINS_ADAMW, 0.03)}
    rows, checks = [], []
    pending = {opt: _submit(st, f"margins_sim-{opt}", task, run, seeds) for opt, (run, tol) in runs.items()}
    fig, axs = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (opt, (run, tol)) in zip(axs, runs.items()):
        lams, B, steps = list(run.lams), run.batch_size, run.steps
        res = pending[opt].result()
        c = compare_margins(res, task, eps=1e-8)
        for i, lam in enumerate(lams):
            rows.append(dict(optimizer=opt, lam=float(lam), batch_size=B, steps=steps, seeds=seeds,
                             max_rel_error=float(c.rel_error[i].max()),
                             max_rel_sem=float((c.sem[i] / np.abs(c.theory[i])).max())))
        checks.append(Check("T2" if opt == "sgd" else "T3",
                            f"deterministic bigram margins, {opt}, simulation vs margin_law (max rel. err)",
                            float(c.rel_error.max()), tol))
        plot.loss_vs_frequency(ax, task.context_probs, c.theory, lams, sim_loss=c.sim.mean(1), sim_err=c.sem,
                               ylabel="margin")
        ax.set_yscale("log")
        ax.set_title(f"{opt}: margin_law (lines) vs training (points)")
    fig.tight_layout()
    text = ("Training the deterministic bigram (K = 64, s = 1.2) in torch, float64, averaging the iterates over "
            "the second half of each run and over seeds; the AdamW equilibrium is a noisy stationary state, so "
            "it is compared at a small learning rate.")
    return Section("margins_sim", "T2/T3 — margin laws against training", text, rows, {"margins_sim": fig}, checks)


def bigram_sim_section(st: Settings) -> Section:
    """Stochastic Zipfian bigram (V = 32): per-bucket loss of training vs bigram_equilibrium, within 3 %."""
    task = BigramTask.stochastic_zipf(**configs.BUCKET_TASK)
    runs = {"sgd": configs.BUCKETS_SGD_FAST if st.fast else configs.BUCKETS_SGD,
            "adamw": configs.BUCKETS_ADAMW_FAST if st.fast else configs.BUCKETS_ADAMW}
    pi = task.token_probs
    rows, worst = [], {"sgd": 0.0, "adamw": 0.0}
    pending = {opt: _submit(st, f"bigram_sim-{opt}", task, run, max(run.seeds, st.seeds)) for opt, run in runs.items()}
    for opt, run in runs.items():
        lams = list(run.lams)
        res = pending[opt].result()
        c = compare_bigram(res, task, eps=1e-8)
        for i, lam in enumerate(lams):
            ids, th = metrics.bucket_loss(c.theory[i], pi)
            _, sim = metrics.bucket_loss(c.sim[i], pi)
            rel = np.abs(sim.mean(0) - th) / th
            worst[opt] = max(worst[opt], float(rel.max()))
            for b, t, s_, e in zip(ids, th, sim.mean(0), rel):
                rows.append(dict(optimizer=opt, lam=float(lam), bucket=int(b), theory=float(t), simulation=float(s_),
                                 rel_error=float(e)))
    checks = [Check("T2", "stochastic bigram, SGD: per-bucket loss, simulation vs bigram_equilibrium",
                    worst["sgd"], 0.03),
              Check("T3", "stochastic bigram, AdamW: per-bucket loss, simulation vs bigram_equilibrium",
                    worst["adamw"], 0.03)]
    text = "Stochastic Zipfian bigram task (V = 32, predictability 0.7): per-bucket loss of trained models vs theory."
    return Section("bigram_sim", "T2/T3 — per-bucket loss against training", text, rows, {}, checks)


def feature_section(st: Settings) -> Section:
    """T4: linear softmax on fixed features (‖h‖ ≤ R, Zipf classes) trained by SGD vs L-BFGS,
    and the norm bound ‖w_c‖ ≤ 2π_c R/λ."""
    task = FeatureTask(K=10, dim=8, s=1.2, n=2000, sigma=0.5, R=1.0, seed=0)
    lams = [0.01, 0.1]
    steps = 2000 if st.fast else 4000
    res = st.submit("features-sgd", task, lams, model=LinearSoftmax(bias=True), optimizer="sgd", steps=steps,
                    batch_size=512, lr=0.5, seeds=(0, 1, 2), average_last=steps // 2).result()
    pi = task.token_probs
    rows, err, ratio = [], 0.0, 0.0
    for i, lam in enumerate(progress_bar(lams, desc="L-BFGS references")):
        W, _, _ = feature_lbfgs(task, lam, bias=True)
        Ws = res.params_avg["W"][i].numpy()  # (S, K, D)
        e = float((np.linalg.norm(Ws - W, axis=(1, 2)) / np.linalg.norm(W)).max())
        bound = 2 * pi * task.R / lam
        r = float((np.linalg.norm(Ws, axis=-1) / bound).max())
        err, ratio = max(err, e), max(ratio, r)
        rows.append(dict(lam=lam, weight_rel_error=e, max_norm_over_bound=r,
                         lbfgs_max_norm_over_bound=float((np.linalg.norm(W, axis=-1) / bound).max())))
    checks = [Check("T4", "fixed features: trained W vs L-BFGS (max rel. err)", err, 0.01),
              Check("T4", "norm bound: max_c ‖w_c‖ / (2 π_c R/λ) (must be <= 1)", ratio, 1.0)]
    text = ("Linear softmax with an undecayed bias on fixed features h = μ_y + σξ, ‖h‖ ≤ R = 1, 10 Zipf classes. "
            "At any stationary point ‖w_c‖ ≤ 2π_c R/λ: rare classes' weights are pinned small by their frequency.")
    return Section("features", "T4 — the norm bound on fixed features", text, rows, {}, checks)


def lm_paradox_section(st: Settings) -> Section:
    """The paradox in a small transformer: held-out per-bucket loss vs λ under AdamW, seeds with
    95 % CIs, and the same sweep with token-balanced reweighting (T6b). With ``st.text`` the
    transformer learns the user's corpus (word tokens, contiguous held-out split)."""
    plt = _plt()
    user = text_tokens(st, 64 if st.fast else 256)
    task, model, steps = small_lm(st.fast, tokens=None if user is None else user[:2])
    B = 16
    lams = (0.0, 0.1, 0.3, 1.0)
    seeds = tuple(range(st.seeds))
    # language-model runs: bfloat16 autocast + TF32 on a GPU (recorded in each sweep's identity)
    precision = "bf16" if resolve_device(st.device).type == "cuda" else "strict"
    kw = dict(model=model, steps=steps, batch_size=B, lr=1e-2, seeds=seeds, dtype=torch.float32, precision=precision)
    pending = {name: st.submit(f"lm_paradox-{name}", task, lams, **paradox_sweep_args(task, mitigation=m, **kw))
               for name, m in (("adamw", None), ("reweight", "reweight"))}
    base_run = pending["adamw"].result()
    base, mitig = summarise_paradox(base_run, B * task.seq_len), summarise_paradox(pending["reweight"].result(),
                                                                                   B * task.seq_len)
    damage = lm_damage_rows(base_run, task, model, B * task.seq_len, fast=st.fast)  # T10, no fitted parameter
    lag = context_counts(task)[1]
    dev = st.device
    posthoc = posthoc_adjusted(base, model, task, 1.0, device=dev)  # T6c: the AdamW models, logits − log π
    cal = {"adamw": paradox_calibration(base, model, task, device=dev),
           "adamw+reweight": paradox_calibration(mitig, model, task, device=dev),
           "adamw+posthoc": paradox_calibration(base, model, task, tau=1.0, device=dev)}
    rows = []
    for name, p in (("adamw", base), ("adamw+reweight", mitig), ("adamw+posthoc", posthoc)):
        for i, lam in enumerate(p.lams):
            rows.append(dict(run=name, lam=float(lam), aggregate_loss=float(p.aggregate[i]),
                             aggregate_ci=float(p.aggregate_ci[i]), token_balanced_loss=float(p.token_balanced[i]),
                             token_balanced_ci=float(p.token_balanced_ci[i]), tail_minus_head=float(p.gap[i]),
                             gap_ci=float(p.gap_ci[i]), ece=float(cal[name]["ece"][i]),
                             marginal_error=float(cal[name]["marginal_error"][i]),
                             **{f"bucket{b}": float(v) for b, v in zip(p.buckets, p.bucket_loss[i])}))
    fig, axs = plt.subplots(1, 3, figsize=(15, 3.8))
    plot.bucket_loss_vs_lambda(axs[0], base.lams, base.bucket_loss, base.bucket_loss_ci, base.buckets)
    axs[0].set_title("AdamW: held-out loss per frequency bucket")
    plot.fairness_vs_aggregate(axs[1], {"AdamW": (base.aggregate, base.gap), "AdamW + 1/π reweighting":
                                        (mitig.aggregate, mitig.gap), "AdamW + post-hoc logit adjustment (τ = 1)":
                                        (posthoc.aggregate, posthoc.gap)}, base.lams)
    damage_comparison(axs[2], damage)
    axs[2].set_title("training damage: transformer vs factored AdamW theory")
    axs[2].legend(fontsize=6)
    fig.tight_layout()
    data = (f"a Zipfian lag-{task.lag} copy process (V = {task.V})" if user is None else
            f"{user[2]}, in windows of {task.seq_len} tokens, the last 20 % of the stream held out")
    text = (f"A {model.n_layer}-layer transformer (width {model.d_model}) on {data}, AdamW, {len(seeds)} seeds, "
            f"held-out loss; {base.below_line:.0%} of the vocabulary is seen less than once per batch of "
            f"{base.tokens_per_batch} tokens (B·π < 1). Two mitigations (T6): retraining with 1/π loss weights, "
            "and post-hoc logit adjustment of the same AdamW models (logits − log π at evaluation, no retraining); "
            "`ece` is the held-out top-1 expected calibration error, `marginal_error` the total variation between "
            "the average predicted distribution and the held-out token frequencies.\n\n"
            "*Predicted without training.* The damage of decay on the training loss (loss at λ minus loss at "
            f"λ = 0, per bucket) of the AdamW runs above, next to the AdamW equilibrium (T10) of a factored model "
            f"of width {model.d_model} on the (context, next token) pairs of the same training data "
            f"({'the previous token' if lag == 1 else f'the token {lag} positions back, which the copy process copies'}"
            f"), B = {B * task.seq_len} tokens per batch, minus the loss of the pairs' empirical law: no fitted "
            f"parameter. {damage_summary(damage)}\n\n{damage_markdown(damage)}")
    return Section("lm_paradox", "The paradox in a small language model", text, rows, {"lm_paradox": fig})
