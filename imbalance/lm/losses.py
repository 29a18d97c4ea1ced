"""Per-token loss of a causal LM accumulated by target token id, and its summaries.

ℓ_v = (Σ of the cross-entropy over the occurrences of v as a target) / (number of them): the
sums and counts are accumulated with ``index_add_`` batch by batch, so any amount of text is
evaluated in constant memory and runs (seeds, shards) combine by adding. Buckets are
``imbalance.zipf.frequency_buckets`` of the *training* frequencies π (powers of 3 as Pinto et
al. 2024, arXiv 2410.11985; equal mass as Kunstner et al. 2024, arXiv 2402.19449).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from ..zipf import frequency_buckets

__all__ = ["logits_of", "token_cross_entropy", "per_token_loss_sums", "loss_summary"]


def logits_of(model, x: torch.Tensor) -> torch.Tensor:
    """(B, T) ids → (B, T, V) logits of a Hugging Face causal LM or a plain module."""
    out = model(input_ids=x) if hasattr(model, "config") else model(x)
    return out.logits if hasattr(out, "logits") else out


def token_cross_entropy(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the N targets of w_y · CE (the training loss; w = 1 without ``weights``):
    logits (..., V), targets y (...), weights (V,) per target id (the 1/(nπ) reweighting of
    ``imbalance.optim.lm.balanced_weights``)."""
    flat = logits.float().reshape(y.numel(), -1)  # (N, V)
    if weights is None:
        return F.cross_entropy(flat, y.reshape(-1))
    return (F.cross_entropy(flat, y.reshape(-1), reduction="none") * weights[y.reshape(-1)]).mean()  # (N,) → ()


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@torch.no_grad()
def per_token_loss_sums(model, windows: torch.Tensor, vocab_size: int, *, batch_size: int = 32, device=None,
                        bf16: bool = False, progress=None, logit_bias=None) -> tuple[np.ndarray, np.ndarray]:
    """(Σ CE per target id (V,) float64, occurrences per target id (V,) int64) over ``windows``
    (n, T+1): inputs ``w[:, :-1]``, targets ``w[:, 1:]``. The model is put in eval mode.
    ``logit_bias`` (V,) is added to the logits first (post-hoc logit adjustment −τ log π,
    ``imbalance.sim.paradox.posthoc_bias``)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    bias = None if logit_bias is None else torch.as_tensor(logit_bias, dtype=torch.float32, device=device)  # (V,)
    was_training = model.training
    model.eval()
    sums = torch.zeros(vocab_size, dtype=torch.float64, device=device)  # (V,)
    counts = torch.zeros(vocab_size, dtype=torch.int64, device=device)  # (V,)
    try:
        for i in range(0, windows.shape[0], batch_size):
            w = windows[i:i + batch_size].to(device, non_blocking=True)  # (b, T+1)
            with _autocast(device, bf16):
                logits = logits_of(model, w[:, :-1])  # (b, T, V')
            y = w[:, 1:].reshape(-1)  # (bT,)
            logits = logits.float() if bias is None else logits.float() + bias  # (b, T, V')
            ce = F.cross_entropy(logits.reshape(y.numel(), -1), y, reduction="none")  # (bT,)
            sums.index_add_(0, y, ce.double())
            counts.index_add_(0, y, torch.ones_like(y))
            if progress is not None:
                progress.update(y.numel())
    finally:
        model.train(was_training)
    return sums.cpu().numpy(), counts.cpu().numpy()


def loss_summary(sums, counts, pi, *, scheme: str = "log3", n_groups: int = 10) -> dict:
    """Aggregate loss (mean CE over all evaluated targets), token-balanced loss (mean of ℓ_v
    over the types with π_v > 0 that occur in the evaluated text) and per-bucket loss (mean CE
    over the bucket's occurrences, buckets by π); a bucket with no occurrence gives None."""
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.int64)
    pi = np.asarray(pi, np.float64)
    if not sums.shape == counts.shape == pi.shape:
        raise ValueError(f"sums, counts and pi must have one shape, got {sums.shape}, {counts.shape}, "
                         f"{pi.shape}")
    if counts.sum() == 0:
        raise ValueError("counts are all zero: nothing was evaluated")
    ids = frequency_buckets(pi, scheme=scheme, n_groups=n_groups)  # (V,)
    n_b = int(ids.max()) + 1
    seen = (ids >= 0) & (counts > 0)
    bsum = np.bincount(ids[seen], weights=sums[seen], minlength=n_b)  # (n_b,)
    bcnt = np.bincount(ids[seen], weights=counts[seen], minlength=n_b)  # (n_b,)
    bucket = [float(s / c) if c > 0 else None for s, c in zip(bsum, bcnt)]  # None: JSON has no NaN
    per_token = sums[seen] / counts[seen]
    return {"aggregate": float(sums.sum() / counts.sum()), "token_balanced": float(per_token.mean()),
            "bucket_loss": bucket, "bucket_tokens": bcnt.astype(int).tolist(),
            "bucket_types": np.bincount(ids[ids >= 0], minlength=n_b).tolist(), "n_types_evaluated": int(seen.sum())}
