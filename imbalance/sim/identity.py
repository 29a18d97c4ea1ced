"""What a sweep *is*: the one description of a sweep's settings that decides its numbers, and its hash.

``sweep_config`` is what ``sweep(out=...)`` writes to ``config.json`` and checks on resume;
``sweep_fingerprint`` (SHA-256 of its canonical JSON) names the sweep's directory in a
``SweepRunner`` and stamps its checkpoint. Both come from here and nowhere else, so a stored
sweep is found again by exactly the settings that produced it.

In the identity: the task's class, the bytes, dtypes and shapes of its data and its settings;
the model's class and plain settings; λ, seeds, steps, batch size, learning rate, dtype,
evaluation period, betas, ε, reweighting, iterate averaging, each decay scale's hash; ``fused``,
``precision`` and ``deterministic`` where they differ from the defaults (each changes rounding).
Not in it: ``device`` (a run resumes on another device), ``out``, ``callback``, ``progress``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import torch

__all__ = ["sweep_config", "sweep_fingerprint", "task_digest", "NOT_IDENTITY"]

NOT_IDENTITY = frozenset({"device", "out", "callback", "progress"})
_TASK_DATA = ("counts", "features", "labels", "train", "heldout", "train_stream")
_PLAIN = (bool, int, float, str, tuple)


def _update_array(h, arr) -> None:
    arr = np.ascontiguousarray(arr)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())


def task_digest(task) -> str:
    """SHA-256 of a task's class, data arrays (bytes, dtype, shape) and plain settings."""
    h = hashlib.sha256(type(task).__name__.encode())
    for name in _TASK_DATA:
        obj = getattr(task, name, None)
        if obj is None:
            continue
        h.update(name.encode())
        if hasattr(obj, "indptr"):  # a sparse matrix: its shape, then its three arrays
            h.update(repr(tuple(obj.shape)).encode())
            for a in (obj.indptr, obj.indices, obj.data):
                _update_array(h, a)
        else:
            _update_array(h, obj.numpy() if torch.is_tensor(obj) else obj)
    fields = vars(task) if not dataclasses.is_dataclass(task) else {f.name: getattr(task, f.name)
                                                                     for f in dataclasses.fields(task)}
    plain = {k: v for k, v in sorted(fields.items()) if isinstance(v, _PLAIN) and k not in _TASK_DATA}
    h.update(json.dumps(plain, sort_keys=True, default=repr).encode())
    return h.hexdigest()


def _array_hash(value) -> str:
    arr = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float64).tobytes()).hexdigest()


def sweep_config(task, lams, *, model, optimizer, steps, batch_size, lr, seeds, dtype, eval_every, betas, eps,
                 decay_scale, reweight, average_last, fused=False, precision="strict", deterministic=True) -> dict:
    """The JSON-ready identity of ``sweep(task, lams, ...)`` from *validated* arguments (see ``sweep``)."""
    config = {"task": type(task).__name__, "task_digest": task_digest(task), "model": type(model).__name__,
              "model_config": {k: v for k, v in vars(model).items() if isinstance(v, _PLAIN)},
              "optimizer": str(optimizer).lower(), "lams": [float(x) for x in np.atleast_1d(lams)],
              "seeds": [int(s) for s in seeds], "steps": int(steps), "batch_size": int(batch_size), "lr": float(lr),
              "dtype": str(dtype), "eval_every": int(eval_every), "betas": [float(b) for b in betas],
              "eps": float(eps), "reweight": bool(reweight), "average_last": int(average_last),
              "decay_scale": {str(k): _array_hash(v) for k, v in sorted((decay_scale or {}).items())}}
    if fused:  # fused and eager AdamW differ in rounding: a run resumes only as what it was
        config["fused"] = True
    if precision != "strict":
        config["precision"] = str(precision)
    if not deterministic:
        config["deterministic"] = False
    return json.loads(json.dumps(config))


def sweep_fingerprint(config: dict) -> str:
    """SHA-256 of a ``sweep_config`` as canonical JSON (sorted keys, no whitespace variation)."""
    body = {k: v for k, v in config.items() if k not in ("fingerprint", "format")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
