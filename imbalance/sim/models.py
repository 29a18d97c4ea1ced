"""Stacked models: every parameter carries a leading axis M (one slice per (λ, seed)).

A model says which parameters are decayed (``decayed``, an explicit constructor
argument: whether the bias or the unembedding is decayed *is* the theory here),
how to initialise one slice per seed, and how to map inputs to logits for all M
models at once. ``eval_logp`` gives the log-probabilities a task needs for its
exact per-token loss.
"""

from __future__ import annotations

import torch

from .._validate import as_positive, as_positive_int
from .optim import RowGrad

__all__ = ["BigramTable", "FactoredBigram", "LinearSoftmax"]


def _check_decayed(decayed, names):
    decayed = tuple(decayed)
    bad = [d for d in decayed if d not in names]
    if bad:
        raise ValueError(f"decayed must name parameters among {list(names)}, got decayed={decayed!r}")
    return decayed


def _rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """table (M, C, ...) and idx (M, B) → table[m, idx[m, b]] as (M, B, ...)."""
    m = torch.arange(table.shape[0], device=table.device).unsqueeze(1)  # (M, 1)
    return table[m, idx]


def _sync_free(device: torch.device) -> bool:
    """Whether the row gather must avoid data-dependent sizes (on an accelerator, where reading a
    size back stalls the host until the device catches up)."""
    return device.type != "cpu"


def _batch_rows(key: torch.Tensor, n_rows: int):
    """The distinct rows of ``key`` (M·B,): (rows (N,), inv (M·B,) slot of each key, slot map or None).

    CPU: N = number of distinct rows (``nonzero``/``unique`` read N back, which costs nothing here).
    Elsewhere: no value is read back. Keys are sorted, each run of equal keys is one slot; N = M·B
    slots, the unused ones padded with row ``key_sorted[0]`` and given zero gradient by the caller
    (``RowGrad`` allows such padding), and the row → slot map is returned for the fused kernel.
    """
    dev = key.device
    if _sync_free(dev):
        srt, order = torch.sort(key)  # (M·B,)
        first = torch.ones_like(srt, dtype=torch.bool)
        first[1:] = srt[1:] != srt[:-1]
        seg = torch.cumsum(first, 0) - 1  # (M·B,) slot of each sorted key
        inv = torch.empty_like(seg).scatter_(0, order, seg)  # slot of each key in batch order
        rows = srt[:1].expand(srt.numel()).clone().scatter_(0, seg, srt)  # (M·B,) padded with srt[0]
        slot = torch.full((n_rows,), -1, dtype=torch.long, device=dev).scatter_(0, srt, seg)  # equal writes
        return rows, inv, slot
    if n_rows <= 8 * key.numel():  # dense marks over all rows: cheaper than a sort unless rows ≫ keys
        seen = torch.zeros(n_rows, dtype=torch.bool, device=dev)
        seen[key] = True
        rows = seen.nonzero().squeeze(1)  # (N,) sorted, as torch.unique
        slot = torch.empty(n_rows, dtype=torch.long, device=dev)
        slot[rows] = torch.arange(rows.numel(), device=dev)
        return rows, slot[key], None
    rows, inv = torch.unique(key, return_inverse=True)  # (N,), (M·B,)
    return rows, inv, None


_BLOCK_BYTES = 2 ** 20  # rows of the batch softmaxed at a time on CPU: half this CPU's 2 MiB L2


def _softmax_rows_(z: torch.Tensor, r: float, coef: torch.Tensor) -> torch.Tensor:
    """In place: z (n, V) ← coef · softmax(r z) row by row; returns log Σ_v exp(r z) (n, 1)."""
    if r != 1.0:
        z.mul_(r)
    top = z.amax(1, keepdim=True)
    total = z.sub_(top).exp_().sum(1, keepdim=True)
    z.mul_(coef / total)
    return top.add_(total.log_())


class BigramTable:
    """T2/T3: logits z = r W[x] for a one-hot context x of norm r; no bias; W decayed.

    Zero initialisation (the objective is convex, so the seed only drives the batches).
    """

    kind = "bigram"
    names = ("W",)

    def __init__(self, decayed=("W",)):
        self.decayed = _check_decayed(decayed, self.names)

    def init(self, task, gens, dtype):
        return {"W": torch.zeros(len(gens), task.n_contexts, task.vocab_size, dtype=dtype)}  # (S, C, V)

    def logits(self, params, ctx, task):
        return task.r * _rows(params["W"], ctx)  # (M, B, V)

    def eval_logp(self, params, task):
        return torch.log_softmax(task.r * params["W"], dim=-1)  # (M, C, V)

    def loss_and_grads(self, params, ctx, tgt, task, weights=None):
        """Minibatch loss (M,) and exact gradient without autograd, touching only the rows
        present in the batch: ∂/∂W[x] = (r/B) (n_x softmax(r W[x]) − t_x), with n_x the
        (weighted) count of context x in the batch and t_x its target counts.

        The gradient is returned as a ``RowGrad`` (rows of W viewed as (M·C, V)).
        """
        W = params["W"]  # (M, C, V)
        M, C, V = W.shape
        B = ctx.shape[1]
        r = task.r
        key = (torch.arange(M, device=W.device).unsqueeze(1) * C + ctx).reshape(-1)  # (M·B,)
        rows, inv, slot = _batch_rows(key, M * C)  # (N,), (M·B,), None or (M·C,): N rows in this batch
        w = weights[tgt].reshape(-1) if weights is not None else torch.ones_like(key, dtype=W.dtype)  # (M·B,)
        n = torch.zeros(rows.numel(), dtype=W.dtype, device=W.device).index_add_(0, inv, w)  # (N,)
        W2, N = W.view(M * C, V), rows.numel()
        coef = ((r / B) * n).unsqueeze(1)  # (N, 1)
        # Softmax a cache-sized block of rows at a time, in place, so that each block stays in cache
        # (faster on CPU than torch.softmax on the whole gathered (N, V) array; see
        # tests/benchmarks/bench_sweep.py). Small problems (one block) skip the preallocation.
        # One block on other devices.
        block = max(1, _BLOCK_BYTES // (V * W.element_size())) if W.device.type == "cpu" else N
        if N <= block:
            g_rows = W2[rows]  # (N, V) becomes (r/B) n_x softmax(r W[x])
            lse = _softmax_rows_(g_rows, r, coef)  # (N, 1) log Σ_v exp(r W[x, v])
        else:
            g_rows = torch.empty(N, V, dtype=W.dtype, device=W.device)
            lse = torch.empty(N, 1, dtype=W.dtype, device=W.device)
            for a in range(0, N, block):
                z = torch.index_select(W2, 0, rows[a:a + block], out=g_rows[a:a + block])
                lse[a:a + block] = _softmax_rows_(z, r, coef[a:a + block])
        y = tgt.reshape(-1)
        hit = r * W2[key, y] - lse[inv, 0]  # (M·B,) log p(y_i | x_i), exact log-softmax
        loss = -(w * hit).view(M, B).sum(1) / B  # (M,)
        g_rows.index_put_((inv, y), (-r / B) * w, accumulate=True)  # − (r/B) t_x
        return loss, {"W": RowGrad(rows, g_rows, slot)}


class FactoredBigram:
    """T7: logits z = W E[x] (unembedding W (V, d), context embedding E (C, d)).

    ``tied=True`` uses W = E (needs contexts = vocabulary): one matrix, one decay. Every
    matrix decayed by default, so the L2 objective is min_Z Σ_x P(x) CE + λ‖Z‖_* (untied,
    (λ/2)(‖W‖² + ‖E‖²)) or (λ/2) tr Z, Z ⪰ 0 (tied, (λ/2)‖E‖²); the exact optimum is
    ``imbalance.theory.factored_bigram_equilibrium(counts, lam=λ, tied=...)``.
    Initialised i.i.d. N(0, init_scale²).
    """

    kind = "bigram"

    def __init__(self, width: int, tied: bool = False, init_scale: float = 0.1, decayed=None):
        self.width = as_positive_int(width, "width")
        self.tied = bool(tied)
        self.init_scale = as_positive(init_scale, "init_scale")
        self.names = ("E",) if self.tied else ("E", "W")
        self.decayed = _check_decayed(self.names if decayed is None else decayed, self.names)

    def init(self, task, gens, dtype):
        if self.tied and task.n_contexts != task.vocab_size:
            raise ValueError(f"tied=True needs contexts = vocabulary, got counts shape "
                             f"({task.n_contexts}, {task.vocab_size})")
        out = {}
        for name, rows in (("E", task.n_contexts), ("W", task.vocab_size)):
            if name in self.names:
                out[name] = torch.stack([self.init_scale * torch.randn(rows, self.width, generator=g, dtype=dtype)
                                         for g in gens])  # (S, rows, d)
        return out

    def _unembed(self, params):
        return params["E"] if self.tied else params["W"]  # (M, V, d)

    def logits(self, params, ctx, task):
        e = task.r * _rows(params["E"], ctx)  # (M, B, d)
        return torch.bmm(e, self._unembed(params).transpose(1, 2))  # (M, B, V)

    def eval_logp(self, params, task):
        z = task.r * torch.bmm(params["E"], self._unembed(params).transpose(1, 2))  # (M, C, V)
        return torch.log_softmax(z, dim=-1)


class LinearSoftmax:
    """T4: logits z = W h + b on fixed features h; W decayed, b (if any) not by default."""

    kind = "feature"

    def __init__(self, bias: bool = True, decayed=("W",)):
        self.bias = bool(bias)
        self.names = ("W", "b") if self.bias else ("W",)
        self.decayed = _check_decayed(decayed, self.names)

    def init(self, task, gens, dtype):
        out = {"W": torch.zeros(len(gens), task.K, task.dim, dtype=dtype)}  # (S, K, D)
        if self.bias:
            out["b"] = torch.zeros(len(gens), task.K, dtype=dtype)  # (S, K)
        return out

    def logits(self, params, h, task):
        z = torch.bmm(h, params["W"].transpose(1, 2))  # (M, B, K)
        return z + params["b"].unsqueeze(1) if self.bias else z

    def eval_logp(self, params, task):
        h = task.features.to(params["W"]).expand(params["W"].shape[0], -1, -1)  # (M, n, D)
        return torch.log_softmax(self.logits(params, h, task), dim=-1)  # (M, n, K)
