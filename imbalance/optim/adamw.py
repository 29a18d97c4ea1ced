"""``FairAdamW``: ``torch.optim.AdamW`` with per-row, lazy or shared-moment options for embedding rows.

Update of a parameter viewed as (R, H) rows (t = step, c = row scale, seen = row has gradient):

    w ← w (1 − lr λ c)                       decay (only seen rows if ``lazy`` ≠ "none")
    m ← β₁ m + (1 − β₁) g,  v ← β₂ v + (1 − β₂) g²   (only seen rows if ``lazy == "moments"``)
    w ← w − lr/(1 − β₁ᵗ) · m / (√(v̄/(1 − β₂ᵗ)) + ε)   (v̄ = v, or its mean over rows if ``coupled``)

Bias corrections use the optimizer's global step in every variant (as LazyAdam does). A row is
"seen" in a step when its gradient row is not identically zero (the rows of an embedding that the
batch looked up; every row of an unembedding receives gradient, so ``lazy`` does nothing there).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._validate import as_choice, as_nonnegative
from ..theory.fair_decay import LAZY

__all__ = ["FairAdamW"]


def _check_betas(betas):
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise ValueError(f"betas must be two numbers in [0, 1), got betas={betas!r}") from None
    for name, b in (("betas[0]", b1), ("betas[1]", b2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {name}={b!r}")
    return b1, b2


class FairAdamW(torch.optim.Optimizer):
    """AdamW with fair-decay options per parameter group (see the module docstring).

    Group options: ``row_decay_scale`` (None or a 1-D array of length rows = ``p.shape[0]`` for every
    parameter of the group, finite and >= 0), ``lazy`` in {"none", "decay", "moments"}, ``coupled``
    (bool). With the defaults the update is ``torch.optim.AdamW``'s (amsgrad, maximize off). State keys
    are AdamW's (``step``, ``exp_avg``, ``exp_avg_sq``), so ``state_dict`` round-trips through
    ``torch.save``/``torch.load(weights_only=True)``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, *, row_decay_scale=None,
                 lazy="none", coupled=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, row_decay_scale=row_decay_scale,
                        lazy=lazy, coupled=coupled)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            self._check_group(group)

    @staticmethod
    def _check_group(group: dict) -> None:
        for key, default in (("row_decay_scale", None), ("lazy", "none"), ("coupled", False)):
            group.setdefault(key, default)  # a state_dict saved by torch.optim.AdamW has none of these
        group["lr"] = as_nonnegative(group["lr"], "lr")
        group["eps"] = as_nonnegative(group["eps"], "eps")
        group["weight_decay"] = as_nonnegative(group["weight_decay"], "weight_decay")
        group["betas"] = _check_betas(group["betas"])
        group["lazy"] = as_choice(group["lazy"], "lazy", set(LAZY))
        if not isinstance(group["coupled"], (bool, np.bool_)):
            raise ValueError(f"coupled must be True or False, got coupled={group['coupled']!r}")
        group["coupled"] = bool(group["coupled"])
        for p in group["params"]:
            if (group["lazy"] != "none" or group["coupled"] or group["row_decay_scale"] is not None) and (
                    p.dim() == 0 or not p.is_contiguous()):
                raise ValueError(f"row options need contiguous parameters with a row axis, got shape "
                                 f"{tuple(p.shape)}, contiguous={p.is_contiguous()}")
        scale = group["row_decay_scale"]
        if scale is None:
            return
        try:
            scale = torch.as_tensor(np.asarray(scale.cpu() if torch.is_tensor(scale) else scale, dtype=np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"row_decay_scale must be a 1-D array of numbers, got {type(scale).__name__}") from None
        if scale.dim() != 1 or not torch.isfinite(scale).all() or (scale < 0).any():
            raise ValueError(f"row_decay_scale must be a 1-D array of finite values >= 0, got shape "
                             f"{tuple(scale.shape)}, min {scale.min().item() if scale.numel() else None}")
        for p in group["params"]:
            if p.shape[0] != scale.shape[0]:
                raise ValueError(f"row_decay_scale has {scale.shape[0]} rows, a parameter of the group has shape "
                                 f"{tuple(p.shape)} (rows on axis 0)")
        ref = group["params"][0] if group["params"] else None
        group["row_decay_scale"] = scale if ref is None else scale.to(device=ref.device, dtype=ref.dtype)

    def _init_group(self, group):
        params, grads, m, v = [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise ValueError(f"FairAdamW needs dense gradients, got a sparse gradient for shape {tuple(p.shape)}")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            params.append(p)
            grads.append(p.grad)
            m.append(state["exp_avg"])
            v.append(state["exp_avg_sq"])
        return params, grads, m, v

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, m, v = self._init_group(group)
            if not params:
                continue
            plain = group["row_decay_scale"] is None and group["lazy"] == "none" and not group["coupled"]
            steps = [float(self.state[p]["step"]) for p in params]
            if plain:
                _plain_adamw(params, grads, m, v, steps, group)
            else:
                for p, g, mi, vi, t in zip(params, grads, m, v, steps):
                    _row_adamw(p, g, mi, vi, t, group)
        return loss


def _plain_adamw(params, grads, m, v, steps, group):
    """``torch.optim.AdamW``'s single-tensor update, with ``torch._foreach`` ops over the group."""
    lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
    b1, b2 = group["betas"]
    torch._foreach_mul_(params, 1.0 - lr * wd)
    torch._foreach_lerp_(m, grads, 1.0 - b1)
    torch._foreach_mul_(v, b2)
    torch._foreach_addcmul_(v, grads, grads, 1.0 - b2)
    step_size = [-lr / (1.0 - b1 ** t) for t in steps]
    bc2_sqrt = [math.sqrt(1.0 - b2 ** t) for t in steps]
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, bc2_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, m, denom, step_size)


def _row_adamw(p, g, m, v, t, group):
    """One parameter with row options; every operation is over whole rows (no loop over rows)."""
    lr, eps, wd, lazy = group["lr"], group["eps"], group["weight_decay"], group["lazy"]
    b1, b2 = group["betas"]
    R = p.shape[0]
    W, G, Mm, V = p.view(R, -1), g.reshape(R, -1), m.view(R, -1), v.view(R, -1)  # (R, H) each
    scale = group["row_decay_scale"]
    lam = wd if scale is None else wd * scale.to(device=p.device, dtype=p.dtype).unsqueeze(1)  # (R, 1) or float
    step_size, bc2_sqrt = lr / (1.0 - b1 ** t), math.sqrt(1.0 - b2 ** t)
    if lazy == "moments":
        _lazy_moments_step(W, G, Mm, V, lam, lr, b1, b2, eps, step_size, bc2_sqrt, group["coupled"])
        return
    if lazy == "decay":
        seen = G.ne(0).any(1, keepdim=True)                                  # (R, 1)
        lam = torch.where(seen, torch.as_tensor(lam, dtype=p.dtype, device=p.device), 0.0)  # (R, 1)
    W.mul_(1.0 - lr * lam)
    Mm.lerp_(G, 1.0 - b1)
    V.mul_(b2).addcmul_(G, G, value=1.0 - b2)
    vv = V.mean(0, keepdim=True) if group["coupled"] else V                  # (1, H) or (R, H)
    W.addcdiv_(Mm, (vv.sqrt() / bc2_sqrt).add_(eps), value=-step_size)


def _lazy_moments_step(W, G, Mm, V, lam, lr, b1, b2, eps, step_size, bc2_sqrt, coupled):
    """LazyAdam: decay, moments and Adam step on the seen rows only, gathered by index."""
    idx = G.ne(0).any(1).nonzero().squeeze(1)                                # (n,)
    if idx.numel() == 0:
        return
    g = G.index_select(0, idx)                                               # (n, H)
    m = Mm.index_select(0, idx).lerp_(g, 1.0 - b1)                           # (n, H)
    v = V.index_select(0, idx).mul_(b2).addcmul_(g, g, value=1.0 - b2)       # (n, H)
    Mm.index_copy_(0, idx, m)
    V.index_copy_(0, idx, v)
    w = W.index_select(0, idx)                                               # (n, H)
    w.mul_(1.0 - lr * (lam.index_select(0, idx) if torch.is_tensor(lam) else lam))
    vv = V.mean(0, keepdim=True) if coupled else v                           # (1, H) or (n, H)
    w.addcdiv_(m, (vv.sqrt() / bc2_sqrt).add_(eps), value=-step_size)
    W.index_copy_(0, idx, w)
