"""Batched optimisers over stacked parameters: leading axis M = one model per (λ, seed).

Each model m has its own weight decay ``lams[m]``; a parameter may carry a per-row
decay scale (T6a, frequency-scaled decay), so the decay of element (m, i, ...) is
``lams[m] * decay_scale[i, ...]``. Undecayed parameters (e.g. a bias) are named in
``decayed`` by omission. The update of one model never reads another model's numbers,
so a batched run equals M separate runs (tested against ``torch.optim``).

SGD: coupled L2, g ← g + λ w, w ← w − lr g  (``torch.optim.SGD(weight_decay=λ)``).
AdamW: decoupled decay, w ← w (1 − lr λ) then the Adam step (``torch.optim.AdamW``).
"""

from __future__ import annotations

import math
import types

import numpy as np
import torch

from .._validate import as_choice, as_frequencies, as_nonnegative, as_positive, as_positive_int
from ..formulas import adamw_rho

__all__ = ["BatchedSGD", "BatchedAdamW", "RowGrad", "make_optimizer", "frequency_decay_scale"]


class RowGrad:
    """A gradient that is zero except on some rows: ``values`` (N, V) at ``rows`` (N,) of the
    parameter viewed as (M·C, V). A row may be listed more than once only with zero values in all
    but one of its slots (the sync-free gather pads with such slots); ``slot`` (M·C,), when given,
    maps each row to its slot with values (−1: no gradient). The optimisers apply it without a
    dense gradient tensor (the bigram table touches only the contexts in the batch)."""

    def __init__(self, rows: torch.Tensor, values: torch.Tensor, slot: torch.Tensor | None = None):
        self.rows, self.values, self.slot = rows, values, slot

    def dense(self, like: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(like)
        out.view(-1, like.shape[-1]).index_add_(0, self.rows, self.values)  # padded slots add zeros
        return out

    def slot_map(self, n_rows: int) -> torch.Tensor:
        """(n_rows,) slot of each row in ``values``, −1 where the row has no gradient."""
        if self.slot is not None:
            return self.slot
        slot = torch.full((n_rows,), -1, dtype=torch.long, device=self.rows.device)
        slot[self.rows] = torch.arange(self.rows.numel(), device=self.rows.device)
        return slot


def _decay_factors(params, lams, decayed, decay_scale):
    """Per-parameter tensor of λ per element, shaped (M, 1, ...) or (M, rows, 1, ...)."""
    out = {}
    for name, p in params.items():
        if name not in decayed:
            continue
        lam = lams.to(device=p.device, dtype=p.dtype).reshape((-1,) + (1,) * (p.dim() - 1))  # (M, 1, ...)
        scale = decay_scale.get(name)
        if scale is not None:
            scale = torch.as_tensor(scale, dtype=p.dtype, device=p.device)
            if scale.dim() > p.dim() - 1:
                raise ValueError(f"decay_scale[{name!r}] has shape {tuple(scale.shape)}, "
                                 f"not broadcastable to one model's {tuple(p.shape[1:])}")
            try:
                torch.broadcast_shapes(scale.shape, p.shape[1:])
            except RuntimeError:
                raise ValueError(f"decay_scale[{name!r}] has shape {tuple(scale.shape)}, "
                                 f"not broadcastable to one model's {tuple(p.shape[1:])}") from None
            if not torch.isfinite(scale).all() or (scale < 0).any():
                raise ValueError(f"decay_scale[{name!r}] must be finite and >= 0")
            lam = lam * scale.reshape((1,) * (p.dim() - scale.dim()) + tuple(scale.shape))
        out[name] = lam
    return out


class _Batched:
    def __init__(self, params, lams, *, lr, decayed=None, decay_scale=None):
        self.lr = as_positive(lr, "lr")
        lams = torch.as_tensor(np.asarray(lams, dtype=np.float64))
        if lams.dim() != 1 or not torch.isfinite(lams).all() or (lams < 0).any():
            raise ValueError(f"lams must be a 1-D array of finite values >= 0, got {lams.tolist()}")
        for name, p in params.items():
            if p.shape[0] != lams.shape[0]:
                raise ValueError(f"params[{name!r}] has {p.shape[0]} models on axis 0, lams has {lams.shape[0]}")
        self.params = params
        self.decayed = set(params) if decayed is None else set(decayed)
        unknown = self.decayed - set(params)
        if unknown:
            raise ValueError(f"decayed names unknown parameters {sorted(unknown)}")
        self.lam = _decay_factors(params, lams, self.decayed, decay_scale or {})
        self.step_count = 0

    def state_dict(self) -> dict:
        return {"step": self.step_count, **{f"{k}.{n}": t for k, d in self._state().items() for n, t in d.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        for k, d in self._state().items():
            for n, t in d.items():
                t.copy_(state[f"{k}.{n}"])

    def _state(self) -> dict:
        return {}


class BatchedSGD(_Batched):
    """Plain SGD with coupled L2 (``torch.optim.SGD(lr, weight_decay=λ)``, no momentum)."""

    @torch.no_grad()
    def step(self, grads: dict) -> None:
        self.step_count += 1
        for name, p in self.params.items():
            g = grads[name]
            if isinstance(g, RowGrad):  # w ← w (1 − lr λ) − lr G, G zero off the rows
                if name in self.lam:
                    p.mul_(1.0 - self.lr * self.lam[name])
                p.view(-1, p.shape[-1]).index_add_(0, g.rows, g.values, alpha=-self.lr)
                continue
            if name in self.lam:
                g = g.add(self.lam[name] * p)  # (M, ...) coupled L2: ∇(λ/2)‖w‖² = λ w
            p.add_(g, alpha=-self.lr)


class BatchedAdamW(_Batched):
    """AdamW with decoupled decay, same operations as ``torch.optim.AdamW`` (amsgrad off).

    ``fused=True`` runs each parameter's update as one compiled pass over memory
    (``torch.compile``). The step count and the hyper-parameters then live on the parameters'
    device, so a step reads nothing back from it; parameters are viewed as (M, N) and each
    distinct (kernel, device, dtype, size-1 pattern) gets a compiled function of its own with
    symbolic sizes, so no number of parameter shapes, sweeps, dtypes or devices in one process
    reaches torch's recompilation limit.
    """

    def __init__(self, params, lams, *, lr, betas=(0.9, 0.999), eps=1e-8, decayed=None, decay_scale=None,
                 fused=False):
        super().__init__(params, lams, lr=lr, decayed=decayed, decay_scale=decay_scale)
        self.fused = bool(fused)
        b1, b2 = (float(b) for b in betas)
        for nm, b in (("betas[0]", b1), ("betas[1]", b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{nm} must be in [0, 1), got {nm}={b!r}")
        self.betas = (b1, b2)
        self.eps = as_nonnegative(eps, "eps")
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        self.shrink = {n: 1.0 - self.lr * lam for n, lam in self.lam.items()}  # (M, ...) 1 − lr λ
        self._zero = {}  # (device, dtype) → 0-d zero, made once
        if self.fused:
            self._fused_setup()

    def _state(self):
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for t in getattr(self, "_step_t", {}).values():
            t.fill_(self.step_count)

    @torch.no_grad()
    def step(self, grads: dict) -> None:
        self.step_count += 1
        if self.fused:
            for t in self._step_t.values():
                t.add_(1)  # on the device: no host value, no copy
            self._fused_step(grads)
            return
        b1, b2 = self.betas
        bc1 = 1.0 - b1 ** self.step_count
        bc2_sqrt = math.sqrt(1.0 - b2 ** self.step_count)
        for name, p in self.params.items():
            g = grads[name]
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            if isinstance(g, RowGrad):
                if b1 > 0 and b2 > 0:
                    # β m + (1−β) g = β (m + g (1−β)/β): add the rows, then a gradient-free dense pass
                    m.view(-1, m.shape[-1]).index_add_(0, g.rows, g.values, alpha=(1.0 - b1) / b1)
                    v.view(-1, v.shape[-1]).index_add_(0, g.rows, torch.square(g.values), alpha=(1.0 - b2) / b2)
                    g = self._zero_like(p)
                else:
                    g = g.dense(p)
            if name in self.shrink:
                p.mul_(self.shrink[name])
            m.lerp_(g, 1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bc1)

    def _zero_like(self, p):
        key = (p.device, p.dtype)
        if key not in self._zero:
            self._zero[key] = torch.zeros((), dtype=p.dtype, device=p.device)
        return self._zero[key]

    def _fused_setup(self):
        """Device-resident step counts, hyper-parameters and decay factors, made once."""
        self._step_t, self._hp, self._dense_shrink, self._row_shrink = {}, {}, {}, {}
        for name, p in self.params.items():
            key = (p.device, p.dtype)
            if key not in self._hp:
                self._hp[key] = torch.tensor([self.lr, *self.betas, self.eps], dtype=p.dtype, device=p.device)
                # (1,), not 0-d: dynamo reads a 0-d CPU tensor's value back into a Python number
                self._step_t[key] = torch.zeros(1, dtype=p.dtype, device=p.device)
            s = self.shrink.get(name)
            if s is None:
                s = torch.ones((p.shape[0],) + (1,) * (p.dim() - 1), dtype=p.dtype, device=p.device)  # (M, 1, ...)
            self._dense_shrink[name] = s
            if p.dim() >= 2:  # the rows kernel: one decay factor per row of the (R, V) view, or per entry
                last = s.shape[-1]
                self._row_shrink[name] = s.expand(*p.shape[:-1], last).reshape(-1, last).contiguous()  # (R, 1|V)

    def _fused_step(self, grads):
        coef = {key: _adamw_coefficients(self._step_t[key], hp) for key, hp in self._hp.items()}  # (5,) per key
        for name, p in self.params.items():
            g = grads[name]
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            c = coef[(p.device, p.dtype)]
            if isinstance(g, RowGrad) and g.rows.numel() > 0:
                # the kernel reads each row's gradient through a row → slot map (−1: zero gradient), so
                # the rows of the batch cost no pass of their own
                V = p.shape[-1]
                slot = g.slot_map(p.numel() // V)  # (R,)
                args = (p.view(-1, V), m.view(-1, V), v.view(-1, V), g.values, slot, self._row_shrink[name], c)
                _compiled(_adamw_rows, args)(*args)
                continue
            if isinstance(g, RowGrad):
                g = g.dense(p)
            elif g._base is not None or not g.is_contiguous():
                g = g.clone(memory_format=torch.contiguous_format)  # dynamo guards a view on its base's layout
            args = (p, g, m, v, self._dense_shrink[name], c)
            _compiled(_adamw_update, args)(*args)


_COMPILED = {}
_BACKEND = "inductor"  # torch.compile backend of the fused kernels (tests use "eager")


def _adamw_coefficients(step, hp):
    """The per-step scalars of the fused AdamW update, (5,) on the device of ``hp`` (no host value):
    1 − β₁, β₂, 1 − β₂, the step size −(lr/bc1)·√bc2 and ε·√bc2.

    Computed once per step outside the compiled kernels: inside them, inductor's CPU code
    re-evaluated β^t and √ per entry, and the update took 3× one pass of memory traffic instead of
    1.2× (33 M float32 entries, one thread; ``tests/benchmarks/bench_sweep.py`` (b) measures the
    sweep's step against that bound).
    """
    lr, b1, b2, eps = hp.unbind()
    bc2_sqrt = (1.0 - b2 ** step).sqrt()  # (1,)
    return torch.cat([(1.0 - b1).reshape(1), b2.reshape(1), (1.0 - b2).reshape(1),
                      -lr * bc2_sqrt / (1.0 - b1 ** step), eps * bc2_sqrt])


def _adamw_update(p, g, m, v, shrink, c):
    """The AdamW step of ``BatchedAdamW.step`` as one expression for torch.compile; ``c`` from
    ``_adamw_coefficients``.

    −(lr/bc1) m/(√v/bc2 + ε) = −(lr bc2/bc1) m/(√v + ε bc2): one division per entry, not two.
    """
    one_b1, b2, one_b2, step_size, eps_bc2 = c.unbind()
    m_new = m + one_b1 * (g - m)  # lerp
    v_new = v * b2 + one_b2 * g * g
    p.copy_(p * shrink + step_size * m_new / (v_new.sqrt() + eps_bc2))
    m.copy_(m_new)
    v.copy_(v_new)


def _adamw_rows(p, m, v, values, slot, shrink, c):
    """``_adamw_update`` on (R, V) views with the gradient of row i = values[slot[i]], zero where slot[i] < 0."""
    rows = slot.unsqueeze(1)  # (R, 1)
    cols = torch.arange(p.shape[1], device=p.device)
    g = torch.where(rows >= 0, values[rows.clamp(0, values.shape[0] - 1), cols], 0.0)  # (R, V); a non-finite
    # gradient row stays in its row (a product with the 0/1 mask would spread inf · 0 = nan)
    _adamw_update(p, g, m, v, shrink, c)


def _compiled(fn, args):
    """A compiled copy of ``fn`` for these arguments' device, dtypes and size-1 pattern.

    Each copy is a fresh code object, so torch's per-function recompilation limit counts the
    graphs of that copy alone; sizes are symbolic (``dynamic=True``), so a copy compiles once for
    every parameter shape that shares the pattern.
    """
    tensors = [a for a in args if torch.is_tensor(a)]
    key = (fn.__name__, _BACKEND, tensors[0].device.type, tensors[0].device.index,
           tuple((str(t.dtype), t.dim(), tuple(s == 1 for s in t.shape)) for t in tensors))
    if key not in _COMPILED:
        tag = f"{fn.__name__}_{len(_COMPILED)}"
        code = fn.__code__.replace(co_name=tag, co_qualname=tag)
        copy = types.FunctionType(code, fn.__globals__, tag, fn.__defaults__, fn.__closure__)
        _COMPILED[key] = torch.compile(copy, dynamic=True, fullgraph=True, backend=_BACKEND)
    return _COMPILED[key]


def make_optimizer(name: str, params, lams, *, lr, decayed=None, decay_scale=None, betas=(0.9, 0.999), eps=1e-8,
                   fused=False):
    """``name`` in {"sgd", "adamw"}; ``fused`` compiles the AdamW update into one pass (torch.compile)."""
    name = as_choice(name, "optimizer", {"sgd", "adamw"})
    if name == "sgd":
        return BatchedSGD(params, lams, lr=lr, decayed=decayed, decay_scale=decay_scale)
    return BatchedAdamW(params, lams, lr=lr, betas=betas, eps=eps, decayed=decayed, decay_scale=decay_scale,
                        fused=fused)


def frequency_decay_scale(pi, optimizer: str = "sgd", batch_size: int | None = None) -> np.ndarray:
    """T6(a): per-row decay scale that equalises the equilibrium margin across rows.

    L2/SGD: κ_x = P(x) r²/λ_x is equal for all rows when λ_x ∝ P(x).
    AdamW (T3): the margin is 2 r ρ_x/λ_x with ρ_x = √(B P / (1 + (B−1) P)), so λ_x ∝ ρ_x.
    ``pi``: row frequencies P(x), or counts (normalised here). Normalised to mean 1 over rows
    with positive frequency (so λ keeps its scale).
    """
    P = as_frequencies(pi, "pi")
    optimizer = as_choice(optimizer, "optimizer", {"sgd", "adamw"})
    if optimizer == "sgd":
        w = P.copy()
    else:
        if batch_size is None:
            raise ValueError("batch_size is required for optimizer='adamw', got batch_size=None")
        w = adamw_rho(P, as_positive_int(batch_size, "batch_size"))
    return w / w[P > 0].mean()
