"""Figures. Every function takes a matplotlib Axes, draws on it and returns it; nothing
here calls ``plt.show()``. ``use_style()`` sets the one shared style."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np

from ._validate import as_choice, as_distribution, as_lams
from .formulas import kappa, unigram_large_lambda, unigram_small_lambda
from .theory import margin_law, unigram_equilibrium

__all__ = ["use_style", "loss_vs_frequency", "aggregate_vs_balanced", "unigram_bias_shift", "margin_collapse",
           "bucket_loss_vs_lambda", "fairness_vs_aggregate"]

STYLE = {
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 10, "axes.titlesize": 10,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "legend.frameon": False, "lines.linewidth": 1.6,
}


def use_style() -> None:
    """Apply the toolkit's matplotlib style (call once, before making figures)."""
    mpl.rcParams.update(STYLE)


def _lam_colors(n):
    return mpl.colormaps["viridis"](np.linspace(0.05, 0.85, n))


def loss_vs_frequency(ax, pi, loss, lams, *, sim_loss=None, sim_err=None, label="theory",
                      ylabel="per-token loss (nats)"):
    """Per-token loss against token frequency (log x axis), one line per λ.

    ``loss``: (n_λ, V) theory; ``sim_loss``: optional (n_λ, V) simulation points drawn
    over the lines (with ``sim_err`` error bars).
    """
    pi = np.asarray(pi, dtype=float)
    loss = np.atleast_2d(loss)
    order = np.argsort(-pi)
    for i, (lam, c) in enumerate(zip(np.atleast_1d(lams), _lam_colors(len(loss)))):
        ax.plot(pi[order], loss[i, order], color=c, label=f"λ = {lam:g} ({label})")
        if sim_loss is not None:
            yerr = None if sim_err is None else np.atleast_2d(sim_err)[i]
            ax.errorbar(pi, np.atleast_2d(sim_loss)[i], yerr=yerr, fmt="o", ms=3, color=c, alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("token frequency π")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


def aggregate_vs_balanced(ax, lams, aggregate, balanced, *, label=""):
    """Aggregate (frequency-weighted) and token-balanced loss against λ."""
    lams = np.atleast_1d(lams)
    ax.plot(lams, aggregate, "o-", label=f"aggregate {label}".strip())
    ax.plot(lams, balanced, "s--", label=f"token-balanced {label}".strip())
    ax.set_xscale("log")
    ax.set_xlabel("weight decay λ")
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=8)
    return ax


def unigram_bias_shift(ax, pi, lams, tokens=(0, -1)):
    """Unigram logits b_k(λ) (T1) with the first-order small-λ line
    b⁰_k + λ ∂b_k/∂λ|₀ and the large-λ asymptote (π_k − 1/K)/λ."""
    pi = as_distribution(pi, "pi")
    lams, _ = as_lams(lams, "lams")
    K = pi.size
    if isinstance(tokens, (str, bytes)) or not all(isinstance(k, (int, np.integer)) and -K <= k < K
                                                   for k in np.atleast_1d(np.asarray(tokens, dtype=object))):
        raise ValueError(f"tokens must be integer ranks in [-{K}, {K}), got tokens={tokens!r:.80}")
    tokens = [int(k) for k in np.atleast_1d(np.asarray(tokens, dtype=object))]
    eq = unigram_equilibrium(pi, lams)
    b0, slope = unigram_small_lambda(pi)
    big = lams > 1.0
    large = unigram_large_lambda(pi, lams[big]) if big.any() else np.zeros((0, pi.size))  # (n_big, K)
    for k, c in zip(tokens, _lam_colors(len(tokens))):
        kk = k % K
        ax.plot(lams, eq.logits[:, kk], color=c, label=f"token rank {kk + 1} (exact)")
        small = lams < 0.5 * pi[kk] / (1 + abs(slope[kk]))
        ax.plot(lams[small], b0[kk] + lams[small] * slope[kk], ":", color=c, label="first order in λ")
        ax.plot(lams[big], large[:, kk], "--", color=c, label="(π − 1/K)/λ")
    ax.set_xscale("log")
    ax.set_xlabel("weight decay λ")
    ax.set_ylabel("logit b_k")
    ax.legend(fontsize=8)
    return ax


def margin_collapse(ax, pi, lams, *, r=1.0, optimizer="sgd", batch_size=None, eps=1e-8):
    """Per-class loss of the deterministic bigram against its scaling variable, for
    several λ: π r²/λ under SGD (T2: the curves coincide) and rρ/λ under AdamW (T3)."""
    pi = as_distribution(pi, "pi")
    lams, _ = as_lams(lams, "lams")
    optimizer = as_choice(optimizer, "optimizer", {"sgd", "adamw"})
    for lam, c in zip(lams, _lam_colors(lams.size)):
        ml = margin_law(pi, lam, r=r, optimizer=optimizer, batch_size=batch_size, eps=eps)
        x = kappa(pi, lam, r) if optimizer == "sgd" else r * ml.rho / lam
        ax.plot(x, ml.loss_per_token, "o", ms=3, color=c, label=f"λ = {lam:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("π r²/λ" if optimizer == "sgd" else "r ρ/λ")
    ax.set_ylabel("per-class loss")
    ax.legend(fontsize=8)
    return ax


def bucket_loss_vs_lambda(ax, lams, bucket_loss, bucket_ci=None, buckets=None):
    """Loss per frequency bucket (0 = most frequent) against λ, with CI bands: the paper's
    Figure 1 shape. ``bucket_loss`` is (n_λ, n_buckets); λ = 0 is drawn at the left edge."""
    lams = np.asarray(lams, dtype=float)
    bl = np.atleast_2d(bucket_loss)
    buckets = np.arange(bl.shape[1]) if buckets is None else np.asarray(buckets)
    x = np.arange(lams.size)
    for j, c in zip(range(bl.shape[1]), mpl.colormaps["plasma"](np.linspace(0.0, 0.85, bl.shape[1]))):
        ax.plot(x, bl[:, j], "o-", color=c, label=f"bucket {buckets[j]}")
        if bucket_ci is not None:
            ci = np.atleast_2d(bucket_ci)[:, j]
            ax.fill_between(x, bl[:, j] - ci, bl[:, j] + ci, color=c, alpha=0.2)
    ax.set_xticks(x, [f"{v:g}" for v in lams])
    ax.set_xlabel("weight decay λ")
    ax.set_ylabel("loss per bucket (nats)")
    ax.legend(fontsize=7, ncol=2, title="frequency bucket (0 = head)", title_fontsize=7)
    return ax


def fairness_vs_aggregate(ax, runs: dict, lams):
    """Tail-minus-head gap against aggregate loss, one curve per run (e.g. mitigations),
    points labelled by λ: what a mitigation buys in fairness and costs in average loss."""
    for (name, (agg, gap)), marker in zip(runs.items(), "osd^v"):
        ax.plot(agg, gap, marker + "-", label=name)
        for a, g, lam in zip(agg, gap, np.atleast_1d(lams)):
            ax.annotate(f"{lam:g}", (a, g), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("aggregate loss (nats)")
    ax.set_ylabel("tail − head bucket loss (nats)")
    ax.legend(fontsize=8)
    return ax
