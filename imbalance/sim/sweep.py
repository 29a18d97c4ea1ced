"""``sweep``: train every (λ, seed) model in one batched program.

Model m = i_λ · n_seed + i_seed. Seed s owns one CPU ``torch.Generator`` that draws
its initialisation and its minibatches; every λ of that seed sees the same batches
(common random numbers), so a λ-difference is never a sampling difference.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .._validate import as_positive_int
from .checkpoint import SweepStore
from .devices import no_tf32, resolve_device
from .evaluate import evaluate, summarise
from .optim import make_optimizer

__all__ = ["sweep", "SweepResult"]


@dataclass(frozen=True)
class SweepResult:
    """Everything on CPU; axes (n_lam, n_seed, ...) unless stated.

    ``loss_per_token``: exact expected per-token loss of the final parameters (bigram and
    feature tasks) or the training-set per-token loss (sequence tasks), (L, S, V);
    ``heldout_loss_per_token`` likewise on the held-out split (sequence tasks, else None);
    ``*_avg``: the same for the iterate average over the last ``average_last`` steps;
    ``curve_steps`` (n_eval,), ``curve_loss_per_token`` (n_eval, L, S, V) and
    ``curve_heldout`` for learning speed; ``train_loss`` (steps, L, S) minibatch losses.
    """

    lams: np.ndarray
    seeds: tuple
    token_probs: np.ndarray
    loss_per_token: np.ndarray
    heldout_loss_per_token: np.ndarray | None
    loss_per_token_avg: np.ndarray | None
    heldout_loss_per_token_avg: np.ndarray | None
    curve_steps: np.ndarray
    curve_loss_per_token: np.ndarray
    curve_heldout: np.ndarray | None
    train_loss: np.ndarray
    params: dict
    params_avg: dict | None
    optimizer: str
    batch_size: int
    lr: float


def _digest(task) -> str:
    h = hashlib.sha256(type(task).__name__.encode())
    for name in ("counts", "features", "labels", "train", "heldout", "train_stream"):
        obj = getattr(task, name, None)
        if obj is None:
            continue
        if hasattr(obj, "indptr"):
            for a in (obj.indptr, obj.indices, obj.data):
                h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(np.ascontiguousarray(obj.numpy() if torch.is_tensor(obj) else obj).tobytes())
    h.update(repr(getattr(task, "r", None)).encode())
    return h.hexdigest()


def _check_lams(lams) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(lams, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"lams must be a scalar or non-empty 1-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise ValueError(f"lams must be finite and >= 0, got lams={arr[bad][0]!r}")
    return arr


def _chunk_size(eval_every, per_step_numel):
    cap = max(1, 2 ** 22 // max(1, per_step_numel))
    return max(d for d in range(1, min(eval_every, cap) + 1) if eval_every % d == 0)


def sweep(task, lams, *, model, optimizer, steps, batch_size, lr, seeds=(0,), device="auto",
          dtype=torch.float64, out=None, eval_every=None, betas=(0.9, 0.999), eps=1e-8,
          decay_scale=None, reweight=False, average_last=0, callback=None, progress=True,
          fused=False) -> SweepResult:
    """Train model × (λ ∈ lams) × (seed ∈ seeds) on ``task`` in one batched loop.

    ``optimizer``: "sgd" (coupled L2) or "adamw" (decoupled); ``decay_scale``: dict
    parameter name → per-row scale (T6a, see ``frequency_decay_scale``); ``reweight``:
    weight each target v by 1/(V π_v) (token-balanced CE, T6b). ``out``: a directory
    for append-only results and checkpoints (every ``eval_every`` steps); rerunning
    with the same arguments resumes and ends identical to an uninterrupted run.
    ``callback(step)`` runs after each step (and after any checkpoint of that step).
    ``fused=True`` compiles the AdamW update into one memory pass (torch.compile; the
    first step pays the compilation; results agree with the eager update to rounding, and
    a fused run resumes only as a fused run).
    """
    lam_arr = _check_lams(lams)
    seeds = tuple(int(as_positive_int(s, "seeds", minimum=0)) for s in np.atleast_1d(seeds).tolist())
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got seeds={seeds!r}")
    steps = as_positive_int(steps, "steps")
    B = as_positive_int(batch_size, "batch_size")
    eval_every = as_positive_int(eval_every or max(1, steps // 20), "eval_every")
    average_last = int(average_last)
    if not 0 <= average_last <= steps:
        raise ValueError(f"average_last must be in [0, steps={steps}], got average_last={average_last}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got dtype={dtype!r}")
    if getattr(model, "kind", None) != getattr(task, "kind", None):
        raise ValueError(f"model {type(model).__name__} (kind {model.kind!r}) does not fit task "
                         f"{type(task).__name__} (kind {task.kind!r})")
    dev = resolve_device(device)
    if dev.type == "mps" and dtype == torch.float64:
        raise ValueError("dtype=torch.float64 is not supported on device 'mps'; use torch.float32 or device='cpu'")
    L, S = lam_arr.size, len(seeds)
    M = L * S

    gens = [torch.Generator().manual_seed(s) for s in seeds]
    params = {k: v.unsqueeze(0).expand(L, *v.shape).reshape(M, *v.shape[1:]).to(dev).contiguous()
              for k, v in model.init(task, gens, dtype).items()}  # (M, ...)
    opt = make_optimizer(optimizer, params, np.repeat(lam_arr, S), lr=lr, decayed=model.decayed,
                         decay_scale=decay_scale, betas=betas, eps=eps, fused=fused)
    pi = np.asarray(task.token_probs, dtype=np.float64)
    weights = None
    if reweight:
        w = np.where(pi > 0, 1.0 / (np.count_nonzero(pi) * np.where(pi > 0, pi, 1.0)), 0.0)
        weights = torch.as_tensor(w, dtype=dtype, device=dev)  # (V,)

    probe = task.sample(torch.Generator().manual_seed(0), 1)
    chunk = _chunk_size(eval_every, B * S * sum(t[0].numel() for t in probe))
    store = None
    if out is not None:
        config = {"task": type(task).__name__, "task_digest": _digest(task), "model": type(model).__name__,
                  "model_config": {k: v for k, v in vars(model).items() if isinstance(v, (int, float, str, bool, tuple))},
                  "optimizer": str(optimizer).lower(), "lams": lam_arr.tolist(), "seeds": list(seeds),
                  "steps": steps, "batch_size": B, "lr": float(lr), "dtype": str(dtype), "eval_every": eval_every,
                  "betas": list(map(float, betas)), "eps": float(eps), "reweight": bool(reweight),
                  "average_last": average_last,
                  "decay_scale": {k: hashlib.sha256(np.asarray(v, dtype=np.float64).tobytes()).hexdigest()
                                  for k, v in (decay_scale or {}).items()}}
        if fused:  # fused and eager AdamW differ in rounding: a run resumes only as what it was
            config["fused"] = True
        config = json.loads(json.dumps(config))
        config["fingerprint"] = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        store = SweepStore(out, config)

    train_loss = torch.zeros(steps, M, dtype=dtype, device=dev)  # (steps, M)
    avg = {k: torch.zeros_like(p) for k, p in params.items()} if average_last else None
    curves: list[tuple[int, dict]] = []
    start = 0
    state = store.load() if store else None
    if state is not None:
        start = int(state["step"])
        for k in params:
            params[k].copy_(state["params"][k])
        opt.load_state_dict(state["opt"])
        for g, st in zip(gens, state["gens"]):
            g.set_state(st)
        train_loss[:start] = state["train_loss"].to(dev)
        if avg is not None:
            for k in avg:
                avg[k].copy_(state["avg"][k])
        curves = [(int(s), e) for s, e in zip(state["curve_steps"], state["curve_evals"])]
    else:
        curves.append((0, evaluate(model, params, task, L, S)))

    def save(step):
        if store is None:
            return
        store.save({"step": step, "params": {k: p.cpu() for k, p in params.items()}, "opt": {
            k: (v.cpu() if torch.is_tensor(v) else v) for k, v in opt.state_dict().items()},
            "gens": [g.get_state() for g in gens], "train_loss": train_loss[:step].cpu(),
            "avg": {k: a.cpu() for k, a in avg.items()} if avg is not None else {},
            "curve_steps": [s for s, _ in curves], "curve_evals": [e for _, e in curves]})
        store.append_results([summarise(s, e, pi, lam_arr, seeds) for s, e in curves])

    bar = tqdm(total=steps, initial=start, disable=None if progress else True, desc=f"sweep {optimizer}",
               leave=False)
    data = None
    with no_tf32():
        for step in range(start, steps):
            if data is None or step % chunk == 0:
                samples = [task.sample(g, chunk * B) for g in gens]
                data = [torch.stack([s[i] for s in samples]).view(S, chunk, B, *samples[0][i].shape[1:])
                        .to(dev, dtype=dtype if samples[0][i].is_floating_point() else None)
                        for i in range(len(samples[0]))]  # each (S, chunk, B, ...)
            x, y = (t[:, step % chunk].unsqueeze(0).expand(L, *t[:, 0].shape).reshape(M, *t.shape[2:])
                    for t in data)  # (M, B, ...)
            if hasattr(model, "loss_and_grads"):
                loss, grads = model.loss_and_grads(params, x, y, task, weights)
            else:
                loss, grads = _autograd_step(model, params, x, y, task, weights)
            opt.step(grads)
            train_loss[step] = loss.detach()
            if avg is not None and step >= steps - average_last:
                for k in avg:
                    avg[k].add_(params[k])
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                curves.append((step + 1, evaluate(model, params, task, L, S)))
                bad = ~torch.isfinite(train_loss[step])
                if bad.any():
                    m = int(bad.nonzero()[0])
                    warnings.warn(f"sweep: training loss is not finite at step {step + 1} for λ={lam_arr[m // S]}, "
                                  f"seed={seeds[m % S]} (diverged? lower lr)", UserWarning, stacklevel=2)
                save(step + 1)
            bar.update(1)
            if callback is not None:
                callback(step + 1)
    bar.close()
    if start == steps and store is not None:
        save(steps)  # restart of a finished run: make sure results.jsonl is complete

    params_avg = {k: (a / average_last) for k, a in avg.items()} if avg is not None else None
    final = curves[-1][1]
    fin_avg = evaluate(model, params_avg, task, L, S) if params_avg is not None else None

    def stack(key, evals):
        if evals[0].get(key) is None:
            return None
        return np.stack([e[key].numpy() for e in evals])

    evals = [e for _, e in curves]
    shape = lambda d: {k: v.detach().cpu().reshape(L, S, *v.shape[1:]) for k, v in d.items()}  # noqa: E731
    return SweepResult(
        lams=lam_arr, seeds=seeds, token_probs=pi,
        loss_per_token=final["train"].numpy(), heldout_loss_per_token=_np(final.get("heldout")),
        loss_per_token_avg=_np(fin_avg["train"]) if fin_avg else None,
        heldout_loss_per_token_avg=_np(fin_avg.get("heldout")) if fin_avg else None,
        curve_steps=np.array([s for s, _ in curves]), curve_loss_per_token=stack("train", evals),
        curve_heldout=stack("heldout", evals), train_loss=train_loss.cpu().numpy().reshape(steps, L, S),
        params=shape(params), params_avg=shape(params_avg) if params_avg is not None else None,
        optimizer=str(optimizer).lower(), batch_size=B, lr=float(lr))


def _autograd_step(model, params, x, y, task, weights):
    """Per-model mean CE (M,) and its gradient; models are independent, so ∇ Σ_m loss_m works."""
    M = y.shape[0]
    with torch.enable_grad():
        for p in params.values():
            p.requires_grad_(True)
        logp = torch.log_softmax(model.logits(params, x, task), dim=-1)  # (M, B, [T,] V)
        ce = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).reshape(M, -1)  # (M, B·T)
        if weights is not None:
            ce = ce * weights[y.reshape(M, -1)]
        loss = ce.mean(1)  # (M,)
        grads = torch.autograd.grad(loss.sum(), list(params.values()))
    for p in params.values():
        p.requires_grad_(False)
    return loss.detach(), dict(zip(params, grads))


def _np(t):
    return None if t is None else t.numpy()
