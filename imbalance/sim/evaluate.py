"""Exact (bigram, feature) or corpus (sequence) per-token losses of stacked models."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["evaluate", "summarise", "sequence_loss_per_token", "sequence_calibration"]


def _bias(logit_bias, task, dtype, dev):
    if logit_bias is None:
        return None
    out = torch.as_tensor(logit_bias, dtype=dtype, device=dev)
    if out.shape != (task.vocab_size,) or not torch.isfinite(out).all():
        raise ValueError(f"logit_bias must be {task.vocab_size} finite numbers, got shape {tuple(out.shape)}")
    return out


@torch.no_grad()
def sequence_loss_per_token(model, params, task, data, batch: int = 64, logit_bias=None) -> torch.Tensor:
    """Mean CE per target token over a corpus ``data`` (n, T+1) for all M models → (M, V).

    ``logit_bias`` (V,) is added to every model's logits before the softmax (post-hoc
    logit adjustment, T6c: −τ log π)."""
    M = next(iter(params.values())).shape[0]
    dev = next(iter(params.values())).device
    dtype = next(iter(params.values())).dtype
    logit_bias = _bias(logit_bias, task, dtype, dev)
    tot = torch.zeros(M, task.vocab_size, dtype=dtype, device=dev)  # (M, V)
    cnt = torch.zeros(task.vocab_size, dtype=dtype, device=dev)  # (V,)
    for i in range(0, data.shape[0], batch):
        x = data[i:i + batch].to(dev)  # (b, T+1)
        inp, tgt = x[:, :-1], x[:, 1:]
        z = model.logits(params, inp.expand(M, *inp.shape), task)  # (M, b, T, V)
        logp = torch.log_softmax(z if logit_bias is None else z + logit_bias, dim=-1)
        ce = -logp.gather(-1, tgt.expand(M, *tgt.shape).unsqueeze(-1)).squeeze(-1)  # (M, b, T)
        tot.index_add_(1, tgt.reshape(-1), ce.reshape(M, -1))
        cnt.index_add_(0, tgt.reshape(-1), torch.ones(tgt.numel(), dtype=dtype, device=dev))
    return tot / torch.where(cnt > 0, cnt, torch.full_like(cnt, float("nan")))


@torch.no_grad()
def sequence_calibration(model, params, task, data, batch: int = 64, logit_bias=None, n_bins: int = 15) -> dict:
    """Calibration of all M models on a corpus ``data`` (n, T+1), optionally after a post-hoc
    ``logit_bias`` (V,): {"ece": (M,) top-1 expected calibration error,
    "marginal": (M, V) average predicted distribution over positions,
    "marginal_error": (M,) its total variation from the targets' empirical frequencies}."""
    from .. import metrics

    M = next(iter(params.values())).shape[0]
    dev = next(iter(params.values())).device
    dtype = next(iter(params.values())).dtype
    logit_bias = _bias(logit_bias, task, dtype, dev)
    conf, corr = [], []
    marginal = torch.zeros(M, task.vocab_size, dtype=torch.float64, device=dev)
    for i in range(0, data.shape[0], batch):
        x = data[i:i + batch].to(dev)  # (b, T+1)
        inp, tgt = x[:, :-1], x[:, 1:]
        z = model.logits(params, inp.expand(M, *inp.shape), task)  # (M, b, T, V)
        p = torch.softmax(z if logit_bias is None else z + logit_bias, dim=-1)
        top, arg = p.max(-1)  # (M, b, T)
        conf.append(top.reshape(M, -1).double().cpu())
        corr.append((arg == tgt).reshape(M, -1).double().cpu())
        marginal += p.reshape(M, -1, task.vocab_size).double().sum(1)
    conf, corr = torch.cat(conf, 1).numpy(), torch.cat(corr, 1).numpy()
    marginal = (marginal / conf.shape[1]).cpu().numpy()
    freq = np.bincount(data[:, 1:].reshape(-1).numpy(), minlength=task.vocab_size)
    return {"ece": metrics.expected_calibration_error(np.clip(conf, 0.0, 1.0), corr, n_bins), "marginal": marginal,
            "marginal_error": metrics.marginal_calibration_error(marginal, freq)}


@torch.no_grad()
def evaluate(model, params, task, L, S) -> dict:
    """{"train": (L, S, V) per-token loss[, "heldout": (L, S, V)]} on CPU, float64."""
    if task.kind == "sequence":
        out = {"train": sequence_loss_per_token(model, params, task, task.train[: task.n_heldout]),
               "heldout": sequence_loss_per_token(model, params, task, task.heldout)}
    else:
        out = {"train": task.loss_per_token(model.eval_logp(params, task))}
    return {k: v.detach().to("cpu", torch.float64).reshape(L, S, -1) for k, v in out.items()}


def summarise(step, ev, pi, lams, seeds) -> dict:
    """One JSON line: aggregate Σ π_v ℓ_v and token-balanced mean_v ℓ_v per (λ, seed)."""
    pi = np.asarray(pi)
    rec = {"step": int(step), "lams": list(map(float, lams)), "seeds": list(seeds)}
    for key, lpt in ev.items():
        lpt = lpt.numpy()
        seen = pi > 0
        rec[f"{key}_aggregate"] = np.nansum(lpt[..., seen] * pi[seen], -1).tolist()
        rec[f"{key}_token_balanced"] = np.nanmean(lpt[..., seen], -1).tolist()
    return rec
