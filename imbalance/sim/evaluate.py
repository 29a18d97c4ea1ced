"""Exact (bigram, feature) or corpus (sequence) per-token losses of stacked models."""

from __future__ import annotations

import numpy as np
import torch

from .. import metrics

__all__ = ["evaluate", "summarise", "sequence_loss_per_token", "sequence_calibration"]


_CPU_EVAL_BYTES = 2 ** 28  # working memory of one evaluation batch on CPU


def eval_batch_rows(M: int, T: int, V: int, dtype: torch.dtype, device: torch.device) -> int:
    """Rows of a corpus evaluated at once: the (M, rows, T, V) logits and their softmax (about four
    such arrays at a time) in the smaller of a quarter of the free and an eighth of the total device
    memory (CUDA), or 256 MiB on CPU. The batch is a power of two, so that a resumed run, which may
    find a little more or less memory free, mostly evaluates in the same batches."""
    budget = _CPU_EVAL_BYTES
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        budget = min(free // 4, total // 8)
    per_row = 4 * M * T * V * torch.empty((), dtype=dtype).element_size()
    rows = max(1, int(budget // per_row))
    return 1 << (rows.bit_length() - 1)


def _logit_batches(model, params, task, data, batch, logit_bias):
    """(logits + logit_bias (M, b, T, V), targets (b, T)) over ``data`` (n, T+1) in batches of rows
    (``batch`` None: sized by ``eval_batch_rows``); logits in the parameters' dtype (under bf16
    autocast too)."""
    ref = next(iter(params.values()))
    M = ref.shape[0]
    if batch is None:
        batch = eval_batch_rows(M, data.shape[1] - 1, task.vocab_size, ref.dtype, ref.device)
    if logit_bias is not None:
        logit_bias = torch.as_tensor(logit_bias, dtype=ref.dtype, device=ref.device)
        if logit_bias.shape != (task.vocab_size,) or not torch.isfinite(logit_bias).all():
            raise ValueError(f"logit_bias must be {task.vocab_size} finite numbers, got shape "
                             f"{tuple(logit_bias.shape)}")
    pin = ref.device.type == "cuda"
    for i in range(0, data.shape[0], batch):
        x = data[i:i + batch]
        x = (x.pin_memory() if pin else x).to(ref.device, non_blocking=pin)  # (b, T+1)
        inp, tgt = x[:, :-1], x[:, 1:]
        z = model.logits(params, inp.expand(M, *inp.shape), task).to(ref.dtype)  # (M, b, T, V)
        yield (z if logit_bias is None else z + logit_bias), tgt


@torch.no_grad()
def sequence_loss_per_token(model, params, task, data, batch: int | None = None, logit_bias=None) -> torch.Tensor:
    """Mean CE per target token over a corpus ``data`` (n, T+1) for all M models → (M, V).

    ``logit_bias`` (V,) is added to every model's logits before the softmax (post-hoc
    logit adjustment, T6c: −τ log π)."""
    ref = next(iter(params.values()))
    M, dev, dtype = ref.shape[0], ref.device, ref.dtype
    ces = [-torch.log_softmax(z, dim=-1).gather(-1, tgt.expand(M, *tgt.shape).unsqueeze(-1)).squeeze(-1)  # (M, b, T)
           for z, tgt in _logit_batches(model, params, task, data, batch, logit_bias)]
    tgt = data[:, 1:].reshape(-1).to(dev)  # (n·T,)
    # one accumulation over the whole corpus, so the sums do not depend on the batch size
    tot = torch.zeros(M, task.vocab_size, dtype=dtype, device=dev).index_add_(1, tgt, torch.cat(ces, 1).reshape(M, -1))
    cnt = torch.zeros(task.vocab_size, dtype=dtype, device=dev).index_add_(
        0, tgt, torch.ones(tgt.numel(), dtype=dtype, device=dev))  # (V,)
    return tot / torch.where(cnt > 0, cnt, torch.full_like(cnt, float("nan")))  # (M, V)


@torch.no_grad()
def sequence_calibration(model, params, task, data, batch: int | None = None, logit_bias=None,
                         n_bins: int = 15) -> dict:
    """Calibration of all M models on a corpus ``data`` (n, T+1), optionally after a post-hoc
    ``logit_bias`` (V,): {"ece": (M,) top-1 expected calibration error,
    "marginal": (M, V) average predicted distribution over positions,
    "marginal_error": (M,) its total variation from the targets' empirical frequencies}."""
    ref = next(iter(params.values()))
    M = ref.shape[0]
    conf, corr = [], []
    marginal = torch.zeros(M, task.vocab_size, dtype=torch.float64, device=ref.device)
    for z, tgt in _logit_batches(model, params, task, data, batch, logit_bias):
        p = torch.softmax(z, dim=-1)
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
def evaluate(model, params, task, L, S, logit_bias=None) -> dict:
    """{"train": (L, S, V) per-token loss[, "heldout": (L, S, V)]} on CPU, float64.
    ``logit_bias`` (sequence tasks): added to the logits, as in ``sequence_loss_per_token``."""
    if task.kind == "sequence":
        out = {"train": sequence_loss_per_token(model, params, task, task.train[: task.n_heldout],
                                                logit_bias=logit_bias),
               "heldout": sequence_loss_per_token(model, params, task, task.heldout, logit_bias=logit_bias)}
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
