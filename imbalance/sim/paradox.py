"""The fair-language-model paradox in a small LM (Pinto et al. 2024, Figure 1 / Table 1 shapes).

``paradox_sweep`` trains a transformer on a SequenceTask for several weight decays and
seeds and reports held-out loss per frequency bucket, aggregate vs token-balanced loss
and the tail-minus-head gap, each as a seed mean with a Student-t confidence interval.
``tokens_per_batch_sweep`` repeats it at one λ over batch sizes at a fixed token budget:
T3 predicts that under AdamW the damage is confined to tokens with B·T·π < 1, so the
gap should shrink as tokens per batch grow, while under SGD (set by π/λ) it should not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .. import metrics
from .._validate import as_choice, as_positive_int
from ..formulas import logit_adjustment
from .devices import resolve_device
from .evaluate import evaluate, sequence_calibration
from .optim import frequency_decay_scale
from .sweep import SweepResult, sweep

__all__ = ["ParadoxResult", "paradox_sweep", "paradox_sweep_args", "summarise_paradox", "tokens_per_batch_sweep",
           "small_lm", "posthoc_bias", "posthoc_adjusted", "paradox_calibration"]


@dataclass(frozen=True)
class ParadoxResult:
    """Seed means and 95 % CI half-widths (``*_ci``), λ leading; buckets: log3 ids, 0 = most frequent."""

    lams: np.ndarray
    buckets: np.ndarray
    bucket_tokens: np.ndarray         # token types per bucket
    bucket_loss: np.ndarray           # (L, n_b) held-out, mass-weighted within a bucket
    bucket_loss_ci: np.ndarray
    aggregate: np.ndarray             # (L,)
    aggregate_ci: np.ndarray
    token_balanced: np.ndarray
    token_balanced_ci: np.ndarray
    gap: np.ndarray                   # tail − head bucket
    gap_ci: np.ndarray
    train_aggregate: np.ndarray       # (L,) on the training split
    tokens_per_batch: int
    below_line: float                 # share of the vocabulary with (tokens per batch)·π < 1
    sweep: SweepResult


def summarise_paradox(res: SweepResult, tokens_per_batch: int, scheme: str = "log3") -> ParadoxResult:
    """The paradox summary of a sweep on a sequence task (what ``paradox_sweep`` returns)."""
    pi = res.token_probs
    held = res.heldout_loss_per_token  # (L, S, V)
    absent = np.isnan(held).all(axis=(0, 1)) & (pi > 0)  # (V,) a type that never occurs in the held-out split
    if absent.any():
        pi = np.where(absent, 0.0, pi)  # bucket and average over the types that were measured
    ids, bl = metrics.bucket_loss(held, pi, scheme=scheme)  # (L, S, n_b)
    per = {"bucket_loss": bl, "aggregate": metrics.aggregate_loss(held, pi),
           "token_balanced": metrics.token_balanced_loss(held, pi), "gap": bl[..., -1] - bl[..., 0]}
    out = {}
    for k, v in per.items():
        mean, half = metrics.mean_ci(v, axis=1) if v.shape[1] > 1 else (v[:, 0], np.full_like(v[:, 0], np.nan))
        out[k], out[f"{k}_ci"] = mean, half
    bucket_of = metrics.frequency_buckets(pi, scheme=scheme)
    return ParadoxResult(
        lams=res.lams, buckets=ids, bucket_tokens=np.array([(bucket_of == b).sum() for b in ids]),
        train_aggregate=metrics.aggregate_loss(res.loss_per_token, pi).mean(1),
        tokens_per_batch=int(tokens_per_batch), below_line=float((tokens_per_batch * pi < 1).mean()),
        sweep=res, **out)


def small_lm(fast: bool = False, tokens=None):
    """(task, model, steps) of the CPU-sized paradox setting used by the report and notebooks.

    Default: V = 128 Zipf(1) lag-2 copy process, one-layer width-32 transformer, 3000 steps
    (sized for a laptop CPU; a GPU affords far larger models). ``fast``: V = 48, width 16,
    150 steps — seconds, for tests and CI.
    ``tokens``: ``(ids, vocab_size)`` of a corpus (e.g. from ``imbalance.corpus.tokenize_words``):
    the task is then a :class:`TokenStreamTask` on it (windows of 16 tokens, the last 20 % of
    the stream held out), with the same model and steps.
    """
    from .tasks import SequenceTask, TokenStreamTask
    from .transformer import Transformer

    model = Transformer(n_layer=1, n_head=2, d_model=16 if fast else 32)
    steps = 150 if fast else 3000
    if tokens is not None:
        ids, vocab_size = tokens
        return TokenStreamTask(ids, vocab_size, seq_len=16, heldout_fraction=0.2), model, steps
    if fast:
        task = SequenceTask(V=48, s=1.1, predictability=0.8, lag=2, seq_len=16, n_train=256, n_heldout=128, seed=0)
    else:
        task = SequenceTask(V=128, s=1.0, predictability=0.8, lag=2, seq_len=16, n_train=2048, n_heldout=512, seed=0)
    return task, model, steps


def paradox_sweep_args(task, *, model, steps, batch_size, lr, seeds=(0, 1, 2), optimizer="adamw", mitigation=None,
                       **sweep_kw) -> dict:
    """The ``sweep`` keyword arguments of a paradox run (see ``paradox_sweep``), for sending
    it elsewhere (``imbalance.sim.scaleout``); summarise the result with ``summarise_paradox``."""
    if getattr(task, "kind", None) != "sequence":
        raise ValueError(f"task must be a SequenceTask or TokenStreamTask, got {type(task).__name__}")
    mitigation = None if mitigation is None else as_choice(mitigation, "mitigation", {"reweight", "row_decay"})
    B = as_positive_int(batch_size, "batch_size")
    kw = dict(sweep_kw, model=model, optimizer=optimizer, steps=steps, batch_size=B, lr=lr, seeds=seeds)
    if mitigation == "reweight":
        kw["reweight"] = True
    elif mitigation == "row_decay":
        # ρ with B = tokens per batch: a token's expected count per batch is what T3 uses
        scale = frequency_decay_scale(task.token_probs, optimizer, batch_size=B * task.seq_len)
        rows = torch.as_tensor(scale).unsqueeze(1)  # (V, 1)
        kw["decay_scale"] = {n: rows for n in ("tok_emb", "unembed") if n in model.decayed}
    return kw


def paradox_sweep(task, lams=(0.0, 0.1, 0.3, 1.0), *, model, steps, batch_size, lr, seeds=(0, 1, 2),
                  optimizer="adamw", mitigation=None, scheme="log3", **sweep_kw) -> ParadoxResult:
    """Held-out per-bucket loss vs λ for ``model`` (a Transformer) on a SequenceTask
    (or a TokenStreamTask: your corpus).

    ``mitigation``: None, "reweight" (token-balanced CE, T6b) or "row_decay" (T6a: the
    decay of each embedding/unembedding row scaled by its token's ρ under AdamW, π under SGD).
    """
    kw = paradox_sweep_args(task, model=model, steps=steps, batch_size=batch_size, lr=lr, seeds=seeds,
                            optimizer=optimizer, mitigation=mitigation, **sweep_kw)
    return summarise_paradox(sweep(task, lams, **kw), kw["batch_size"] * task.seq_len, scheme)


def tokens_per_batch_sweep(task, lam, batch_sizes, *, model, token_budget, lr, seeds=(0, 1, 2),
                           optimizer="adamw", scheme="log3", **sweep_kw) -> list[ParadoxResult]:
    """One ``paradox_sweep`` at λ ∈ {0, lam} per batch size, each with the same number of
    training tokens (steps = token_budget / (B · seq_len)); a loop over batch sizes, each
    batched over (λ, seed)."""
    out = []
    for B in batch_sizes:
        B = as_positive_int(B, "batch_sizes")
        steps = max(1, int(token_budget) // (B * task.seq_len))
        out.append(paradox_sweep(task, (0.0, float(lam)), model=model, steps=steps, batch_size=B, lr=lr,
                                 seeds=seeds, optimizer=optimizer, scheme=scheme, **sweep_kw))
    return out


def posthoc_bias(pi, tau) -> np.ndarray:
    """−τ log π (V,), the post-hoc logit adjustment (Menon et al. 2021; T6c). Tokens with π = 0
    (never seen in training) are given the smallest positive π, i.e. the rarest seen token's boost."""
    return logit_adjustment(pi, tau, unseen="rarest", name="pi")


def _stacked(res: SweepResult, device="auto"):
    """The trained parameters as (M, ...) on ``device`` (evaluations run where training ran)."""
    dev = resolve_device(device)
    return {k: v.reshape(-1, *v.shape[2:]).to(dev) for k, v in res.params.items()}  # (L, S, ...) → (M, ...)


def posthoc_adjusted(result: ParadoxResult, model, task, tau, scheme: str = "log3", device="auto") -> ParadoxResult:
    """The same trained models, evaluated after post-hoc logit adjustment z − τ log π (T6c):
    no training, only a bias on the logits at evaluation; π is the training-split ``token_probs``."""
    res = result.sweep
    ev = evaluate(model, _stacked(res, device), task, res.lams.size, len(res.seeds),
                  logit_bias=posthoc_bias(res.token_probs, tau))
    adjusted = replace(res, loss_per_token=ev["train"].numpy(), heldout_loss_per_token=ev["heldout"].numpy(),
                       loss_per_token_avg=None, heldout_loss_per_token_avg=None)
    return summarise_paradox(adjusted, result.tokens_per_batch, scheme)


def paradox_calibration(result: ParadoxResult, model, task, tau=0.0, n_bins: int = 15, device="auto") -> dict:
    """Held-out calibration of the trained models (after a post-hoc adjustment τ if τ > 0):
    {"ece", "ece_ci", "marginal_error", "marginal_error_ci"}, seed means and 95 % CIs, (L,)."""
    res = result.sweep
    params = _stacked(res, device)
    cal = sequence_calibration(model, params, task, task.heldout, logit_bias=posthoc_bias(res.token_probs, tau),
                               n_bins=n_bins)
    L, S = res.lams.size, len(res.seeds)
    out = {}
    for k in ("ece", "marginal_error"):
        v = np.asarray(cal[k]).reshape(L, S)
        out[k], out[f"{k}_ci"] = metrics.mean_ci(v, axis=1) if S > 1 else (v[:, 0], np.full(L, np.nan))
    return out
