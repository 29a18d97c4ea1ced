"""Report sections computed exactly, without training: T1 unigram, T2/T3 margin laws and
the bigram model of a token stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from .. import metrics, plot
from ..corpus import bigram_counts, tokenize_words, zipf_markov_stream
from ..theory import bigram_equilibrium, margin_law, unigram_equilibrium
from ..zipf import zipf_pmf
from .report import Check, Section, Settings

__all__ = ["unigram_section", "margin_section", "bigram_section", "text_tokens", "text_counts"]


def _bucket_means(loss: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """Mean per-token loss (over types) in each powers-of-3 frequency bucket, 0 = most frequent."""
    return metrics.bucket_loss(loss, pi, "log3", weighting="types")[1]


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plot.use_style()
    return plt


def unigram_section(st: Settings) -> Section:
    """T1: exact unigram equilibria; check against L-BFGS on the raw objective."""
    plt = _figure()
    K = 1000
    pi = zipf_pmf(K, 1.1)
    lams = st.lams
    eq = unigram_equilibrium(pi, lams)
    rows = []
    for i, lam in enumerate(lams):
        b = _bucket_means(eq.loss_per_token[i], pi)
        rows.append(dict(lam=float(lam), aggregate_loss=float(eq.aggregate_loss[i]),
                         token_balanced_loss=float(eq.token_balanced_loss[i]), tail_minus_head=float(b[-1] - b[0]),
                         logit_head=float(eq.logits[i, 0]), logit_tail=float(eq.logits[i, -1])))
    # independent check: L-BFGS on −Σπ log softmax(b) + (λ/2)‖b‖², K = 200
    pi_s = zipf_pmf(200, 1.1)
    err = 0.0
    for lam in (1e-2, 1e-1, 1.0):
        res = minimize(lambda b: (-pi_s @ log_softmax(b) + 0.5 * lam * b @ b, softmax(b) - pi_s + lam * b),
                       np.zeros(200), jac=True, method="L-BFGS-B", options=dict(gtol=1e-12, ftol=1e-16, maxiter=10_000))
        p = unigram_equilibrium(pi_s, lam).probs
        err = max(err, float(np.max(np.abs(softmax(res.x) - p) / p)))
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
    plot.unigram_bias_shift(axs[0], pi, np.logspace(-6, 3, 80), tokens=(0, 99, K - 1))
    plot.aggregate_vs_balanced(axs[1], lams, eq.aggregate_loss, eq.token_balanced_loss)
    fig.tight_layout()
    text = ("Exact minimiser of −Σπ log softmax(b) + (λ/2)‖b‖² (Wright ω closed form), K = 1000, Zipf s = 1.1. "
            "Weight decay squeezes the logits from the prior log π − mean(log π) towards 0: the head loses "
            "probability, the tail gains it, so in this one-hot model the token-balanced loss *falls* with λ.")
    return Section("unigram", "T1 — unigram model: the bias shift", text, rows, {"unigram": fig},
                   [Check("T1", "unigram_equilibrium vs L-BFGS-B on the raw objective (max rel. err of p)", err, 1e-6)])


def margin_section(st: Settings) -> Section:
    """T2/T3: deterministic-bigram margins; check the scalar laws against the full solve."""
    plt = _figure()
    pi = zipf_pmf(64, 1.2)
    rows, err = [], 0.0
    for lam in st.lams:
        for opt in ("sgd", "adamw"):
            ml = margin_law(pi, lam, optimizer=opt, batch_size=64)
            be = bigram_equilibrium(np.diag(pi), lam, optimizer=opt, batch_size=64)
            err = max(err, float(np.max(np.abs(ml.loss_per_token - be.loss_per_token)
                                        / np.maximum(be.loss_per_token, 1e-300))))
            rows.append(dict(lam=float(lam), optimizer=opt, margin_rank1=float(ml.margins[0]),
                             margin_rank8=float(ml.margins[7]), margin_rank64=float(ml.margins[63]),
                             aggregate_loss=float(ml.aggregate_loss),
                             token_balanced_loss=float(ml.token_balanced_loss)))
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
    plot.margin_collapse(axs[0], pi, [1e-3, 1e-2, 1e-1])
    plot.margin_collapse(axs[1], pi, [1e-3, 1e-2, 1e-1], optimizer="adamw", batch_size=64, eps=0.0)
    axs[0].set_title("SGD + L2")
    axs[1].set_title("AdamW, B = 64, ε → 0")
    fig.tight_layout()
    text = ("Context k is always followed by token k, P(k) = π_k (K = 64, s = 1.2). Under SGD + L2 the loss "
            "depends on π, λ, r only through π r²/λ (left: one curve for all λ); under AdamW the margin is "
            "2rρ/λ with ρ = √(Bπ/(1+(B−1)π)) as ε → 0, so tokens seen at least once per batch are treated alike.")
    return Section("margins", "T2/T3 — margin laws under SGD and AdamW", text, rows, {"margins": fig},
                   [Check("T2/T3", "margin_law vs bigram_equilibrium(diag(π)) (max rel. err of loss)", err, 1e-9)])


def text_tokens(st: Settings, vocab_size: int):
    """``(ids, V, description)`` of the user's corpus (``--text``), or None: word tokens, the
    ``vocab_size − 1`` most frequent types kept, the rest mapped to ``<unk>``."""
    if st.text is None:
        return None
    ids, vocab = tokenize_words(Path(st.text).read_text(encoding="utf-8", errors="replace"), vocab_size)
    return ids, len(vocab), f"the user's text {Path(st.text).name} ({ids.size:,} tokens, V = {len(vocab)})"


def text_counts(st: Settings, vocab_size: int):
    """Bigram counts of the user's corpus (see ``text_tokens``) and its description, or None."""
    user = text_tokens(st, vocab_size)
    if user is None:
        return None
    ids, V, source = user
    return bigram_counts(ids, V), source


def _counts(st: Settings):
    user = text_counts(st, 500 if st.fast else 2000)
    if user is not None:
        return user
    V, n = (200, 100_000) if st.fast else (500, 1_000_000)
    ids = zipf_markov_stream(V, n, s=1.1, sharpness=3.0, seed=0)
    return bigram_counts(ids, V), f"a Zipfian Markov stream (V = {V}, {n:,} tokens, s = 1.1)"


def bigram_section(st: Settings) -> Section:
    """T2/T3 on a token stream: aggregate vs token-balanced loss, exact."""
    plt = _figure()
    C, source = _counts(st)
    freq = np.asarray(C.sum(axis=0)).ravel()
    rows = []
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, opt in zip(axs, ("sgd", "adamw")):
        eq = bigram_equilibrium(C, st.lams, optimizer=opt, batch_size=256)
        adj = eq.logit_adjusted(1.0) if (freq > 0).all() else None  # T6c needs every π_v > 0
        tv = metrics.marginal_calibration_error(eq.predicted_marginal(), freq)
        for i, lam in enumerate(st.lams):
            b = _bucket_means(eq.loss_per_token[i], freq)
            extra = {}
            if adj is not None:
                ba = _bucket_means(adj.loss_per_token[i], freq)
                extra = dict(posthoc_aggregate_loss=float(adj.aggregate_loss[i]),
                             posthoc_token_balanced_loss=float(adj.token_balanced_loss[i]),
                             posthoc_tail_minus_head=float(ba[-1] - ba[0]))
            rows.append(dict(lam=float(lam), optimizer=opt, aggregate_loss=float(eq.aggregate_loss[i]),
                             token_balanced_loss=float(eq.token_balanced_loss[i]), tail_minus_head=float(b[-1] - b[0]),
                             marginal_error=float(tv[i]), **extra))
        plot.aggregate_vs_balanced(ax, st.lams, eq.aggregate_loss, eq.token_balanced_loss)
        ax.set_title(f"{opt}, exact equilibrium")
    fig.tight_layout()
    text = (f"Bigram model (one-hot context, decayed output matrix) of {source}, solved exactly under SGD + L2 "
            "and under AdamW (B = 256, ε = 1e-8). Here the decay acts per *context* and pulls each prediction "
            "towards uniform. `marginal_error` is the total variation between the model's average prediction "
            "and the token frequencies; `posthoc_*` are the same equilibria after post-hoc logit adjustment "
            "(logits − log π, τ = 1, T6c), exact.")
    return Section("bigram", "T2/T3 — the bigram model of a token stream", text, rows, {"bigram": fig})


