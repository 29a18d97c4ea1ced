"""Figures of the LM sweep and the audit. Each function takes a matplotlib Axes, draws on it
and returns it (the convention of ``imbalance.plot``); nothing here calls ``plt.show()``."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np

__all__ = ["aggregate_vs_balanced_by_lambda", "bucket_learning_curves", "row_norms_vs_frequency",
           "logit_offset_vs_log_frequency", "bucket_loss_bars"]


def aggregate_vs_balanced_by_lambda(ax, lams, aggregate, balanced, aggregate_ci=None, balanced_ci=None, *,
                                    label=""):
    """Aggregate and token-balanced loss against λ on a categorical axis (λ = 0 included)."""
    x = np.arange(len(lams))
    for y, ci, fmt, name in ((aggregate, aggregate_ci, "o-", "aggregate"), (balanced, balanced_ci, "s--",
                                                                             "token-balanced")):
        ax.errorbar(x, y, yerr=ci, fmt=fmt, capsize=3, label=f"{name} {label}".strip())
    ax.set_xticks(x, [f"{v:g}" for v in lams])
    ax.set_xlabel("weight decay λ")
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=8)
    return ax


def bucket_learning_curves(ax, steps, bucket_loss, *, title=""):
    """Loss per frequency bucket (columns of ``bucket_loss`` (n_eval, n_b)) against the step."""
    bl = np.asarray(bucket_loss, dtype=float)
    for j, c in zip(range(bl.shape[1]), mpl.colormaps["plasma"](np.linspace(0.0, 0.85, bl.shape[1]))):
        ax.plot(steps, bl[:, j], color=c, label=f"bucket {j}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return ax


def row_norms_vs_frequency(ax, pi, norms: dict):
    """Row norms of the (un)embedding against token frequency (log x; types with π > 0)."""
    pi = np.asarray(pi, dtype=float)
    seen = pi > 0
    for (name, n), marker in zip(norms.items(), ".x"):
        ax.plot(pi[seen], np.asarray(n)[seen], marker, ms=3, alpha=0.5, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("token frequency π")
    ax.set_ylabel("row norm")
    ax.legend(fontsize=8)
    return ax


def logit_offset_vs_log_frequency(ax, log_freq, offset, slope: float, intercept: float):
    """Mean centred logit against centred log π, with the least-squares line and the identity
    (the λ → 0 logit-adjustment prior of the unigram model, T1)."""
    ax.plot(log_freq, offset, ".", ms=3, alpha=0.5, label="tokens")
    xs = np.linspace(np.min(log_freq), np.max(log_freq), 50)
    ax.plot(xs, intercept + slope * xs, "-", label=f"fit, slope {slope:.2f}")
    ax.plot(xs, xs, ":", color="gray", label="slope 1 (offset = log π)")
    ax.set_xlabel("log π − mean log π")
    ax.set_ylabel("mean logit − mean over tokens")
    ax.legend(fontsize=8)
    return ax


def bucket_loss_bars(ax, bucket_loss, bucket_types, *, aggregate=None, balanced=None):
    """Held-out loss per frequency bucket, with the aggregate and token-balanced levels."""
    bl = np.asarray(bucket_loss, dtype=float)
    ax.bar(np.arange(bl.size), bl, color=mpl.colormaps["plasma"](np.linspace(0.0, 0.85, bl.size)))
    ax.set_xticks(np.arange(bl.size), [f"{j}\n({n})" for j, n in enumerate(bucket_types)], fontsize=7)
    if aggregate is not None:
        ax.axhline(aggregate, color="k", ls="-", lw=1, label=f"aggregate {aggregate:.2f}")
    if balanced is not None:
        ax.axhline(balanced, color="k", ls="--", lw=1, label=f"token-balanced {balanced:.2f}")
    ax.set_xlabel("frequency bucket (0 = head; token types)")
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=8)
    return ax
