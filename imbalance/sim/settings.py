"""What ``sweep`` accepts: its arguments validated (``ValueError`` naming the parameter and the
value), defaults filled in, the device resolved and ``fused="auto"`` decided."""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import torch

from .._validate import as_choice, as_lams, as_nonnegative, as_positive, as_positive_int
from .devices import PRECISIONS, resolve_device

__all__ = ["check_lams", "resolve_fused", "sweep_settings"]


def check_lams(lams) -> np.ndarray:
    """λ as a non-empty 1-D float64 array of finite values ≥ 0 (the shared check
    :func:`imbalance._validate.as_lams` with ``allow_zero``: λ = 0 is a run like any other)."""
    return as_lams(lams, "lams", allow_zero=True)[0]


def _check_seeds(seeds) -> tuple:
    try:
        raw = np.atleast_1d(np.asarray(seeds, dtype=object)).tolist()
    except (TypeError, ValueError):
        raise ValueError(f"seeds must be non-negative integers, got seeds={seeds!r:.80}") from None
    if not isinstance(raw, list) or any(isinstance(s, list) for s in raw):
        raise ValueError(f"seeds must be an integer or a 1-D sequence of integers, got seeds={seeds!r:.80}")
    out = tuple(as_positive_int(s, "seeds", minimum=0) for s in raw)
    if len(out) == 0 or len(set(out)) != len(out):
        raise ValueError(f"seeds must be distinct non-negative integers, got seeds={out!r}")
    return out


def _check_model_and_task(model, task) -> None:
    for name, obj, needs in (("task", task, ("kind", "sample", "token_probs")),
                             ("model", model, ("kind", "init", "decayed"))):
        missing = [a for a in needs if not hasattr(obj, a)]
        if missing:
            raise ValueError(f"{name} must be an imbalance.sim {name} (lacks {missing}), got {name}={obj!r:.80}")
    if model.kind != task.kind:
        raise ValueError(f"model {type(model).__name__} (kind {model.kind!r}) does not fit task "
                         f"{type(task).__name__} (kind {task.kind!r})")


def _check_dtype(dtype, device) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got dtype={dtype!r}")
    if device.type == "mps" and dtype == torch.float64:
        raise ValueError("dtype=torch.float64 is not supported on device 'mps'; use torch.float32 or device='cpu'")
    return dtype


# fused="auto": where compiling the AdamW update was measured to repay itself, end to end as a user
# calls sweep (tests/benchmarks/bench_sweep.py::test_fused_auto_threshold: 16 bigram tables, V = 256,
# float64, 1 CPU thread; break-even near 3·10⁸ entry-updates; smaller models were not measured)
_AUTO_FUSED_MIN_ENTRIES = 2 ** 20  # parameter entries per step, all models together (the measured size)
_AUTO_FUSED_MIN_UPDATES = 5e8  # parameter entries × steps


def _compiler_available(device: torch.device) -> bool:
    if device.type == "cpu":
        cxx = os.environ.get("CXX", "")
        return any(shutil.which(c) for c in (cxx, "g++", "c++", "clang++") if c)
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    return False


def resolve_fused(fused, optimizer: str, device, steps: int, n_entries: int) -> bool:
    """``fused`` as a bool. "auto": on for AdamW where torch.compile has a compiler for ``device``
    (a C++ compiler on CPU, Triton on CUDA), the models hold at least 2²⁰ parameter entries
    together (``n_entries``) and the run updates at least 5·10⁸ in all (× ``steps``): where the
    measured per-step saving outweighs the compilation."""
    if isinstance(fused, str) and fused == "auto":
        return (optimizer == "adamw" and n_entries >= _AUTO_FUSED_MIN_ENTRIES
                and n_entries * steps >= _AUTO_FUSED_MIN_UPDATES and _compiler_available(resolve_device(device)))
    if not isinstance(fused, (bool, np.bool_)):
        raise ValueError(f"fused must be True, False or 'auto', got fused={fused!r:.80}")
    return bool(fused)


def sweep_settings(task, lams, *, model, optimizer, steps, batch_size, lr, seeds=(0,), device="auto",
                   dtype=torch.float64, eval_every=None, betas=(0.9, 0.999), eps=1e-8, decay_scale=None,
                   reweight=False, average_last=0, fused="auto", precision="strict", deterministic=True, callback=None,
                   progress=True, available=True) -> dict:
    """``sweep``'s arguments validated, defaults filled in, ``device`` and ``fused`` resolved.
    ``available=False``: ``device`` is only parsed, not required here (a job elsewhere resolves it)."""
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got callback={callback!r:.80}")
    lam_arr, seeds = check_lams(lams), _check_seeds(seeds)
    _check_model_and_task(model, task)
    optimizer = as_choice(optimizer, "optimizer", {"sgd", "adamw"})
    steps, B, lr = as_positive_int(steps, "steps"), as_positive_int(batch_size, "batch_size"), as_positive(lr, "lr")
    eval_every = as_positive_int(eval_every or max(1, steps // 20), "eval_every")
    average_last = as_positive_int(average_last, "average_last", minimum=0)
    if average_last > steps:
        raise ValueError(f"average_last must be in [0, steps={steps}], got average_last={average_last}")
    precision = as_choice(precision, "precision", set(PRECISIONS))
    if not isinstance(deterministic, (bool, np.bool_)):
        raise ValueError(f"deterministic must be True or False, got deterministic={deterministic!r:.80}")
    if decay_scale is not None and not isinstance(decay_scale, dict):
        raise ValueError(f"decay_scale must be a dict name → scale or None, got decay_scale={decay_scale!r:.80}")
    unknown = sorted(map(str, set(decay_scale or {}) - set(model.decayed)))
    if unknown:
        raise ValueError(f"decay_scale names parameters that are not decayed: {unknown} "
                         f"(decayed: {list(model.decayed)})")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"betas must be a pair of numbers in [0, 1), got betas={betas!r:.80}")
    betas = tuple(as_nonnegative(b, f"betas[{i}]") for i, b in enumerate(betas))
    dev = resolve_device(device) if available else _parse_device(device)
    dtype = _check_dtype(dtype, dev)
    if precision == "bf16" and dtype != torch.float32:
        raise ValueError(f"precision='bf16' autocasts float32 parameters, got dtype={dtype!r}")
    if isinstance(fused, str) and fused == "auto":  # the work decides: count the parameter entries
        one = model.init(task, [torch.Generator().manual_seed(0)], dtype)
        fused = resolve_fused(fused, optimizer, dev, steps, lam_arr.size * len(seeds)
                              * sum(v.numel() for v in one.values()))
    return dict(lams=lam_arr, seeds=seeds, model=model, optimizer=optimizer, steps=steps, batch_size=B, lr=lr,
                device=dev, dtype=dtype, eval_every=eval_every, betas=betas, eps=as_nonnegative(eps, "eps"),
                decay_scale=decay_scale, reweight=bool(reweight), average_last=average_last,
                fused=resolve_fused(fused, optimizer, dev, steps, 0), precision=precision,
                deterministic=bool(deterministic))


def _parse_device(device) -> torch.device:
    if isinstance(device, str) and device == "auto" and os.environ.get("IMBALANCE_DEVICE", "auto") in ("", "auto"):
        return resolve_device("auto")
    if isinstance(device, str) and device == "auto":
        return _parse_device(os.environ["IMBALANCE_DEVICE"].strip())
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got device={device!r:.80}") from None
