"""Device choice and the numerical settings a sweep runs under.

``resolve_device``: "auto" = cuda > mps > cpu, overridden by the IMBALANCE_DEVICE variable.

``numerics(device, precision, deterministic)`` is the one block every training step and every
evaluation of a sweep runs inside:

- ``precision="strict"``: IEEE float32 matmuls and convolutions (no TF32); what theory checks use.
- ``precision="tf32"``: TF32 tensor-core matmuls and convolutions for float32 (CUDA).
- ``precision="bf16"``: TF32 plus bfloat16 autocast of the forward pass (float32 parameters and
  optimiser state; CUDA tensor cores, also accepted on CPU).

TF32 is switched through ``fp32_precision`` (torch ≥ 2.9) where torch has it, else through the
legacy ``allow_tf32`` flags; the legacy flags are never read where the new ones exist (torch refuses
a read of them once a program has used the new ones). Every setting is restored on exit.

``deterministic=True`` sets ``torch.use_deterministic_algorithms`` (CUDA: ``index_add_`` and
accumulating ``index_put_`` on floats take their sorted, atomic-free kernels, cuBLAS gets the fixed
workspace ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when the variable is unset, and attention runs through
the math kernel): a run, its resume and its λ-split parts then give the same bits on one machine,
GPU included. CPU kernels are deterministic either way.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["resolve_device", "no_tf32", "numerics", "PRECISIONS", "visible_gpus"]

PRECISIONS = ("strict", "tf32", "bf16")


def resolve_device(device="auto") -> torch.device:
    """A torch.device; "auto" reads IMBALANCE_DEVICE first, then picks cuda > mps > cpu."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise ValueError(f"device must be a string or torch.device, got device={device!r}")
    if device == "auto":
        env = os.environ.get("IMBALANCE_DEVICE", "").strip()
        if env and env != "auto":
            return resolve_device(env)
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda[:i]' or 'mps', got device={device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r} requested but MPS is not available")
    return dev


def visible_gpus() -> tuple[int, str | None]:
    """(number of GPUs this process may use, its CUDA_VISIBLE_DEVICES or None when unset), for
    handing the same GPUs to a job started from here."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [s.strip() for s in env.split(",") if s.strip()]
        return len(ids), env
    return (torch.cuda.device_count() if torch.cuda.is_available() else 0), None


def _fp32_switches():
    """The fp32_precision settings (new API) as (object, attribute) pairs; () on older torch."""
    cudnn = torch.backends.cudnn
    pairs = [(torch.backends.cuda.matmul, "fp32_precision")]
    for sub in ("conv", "rnn"):
        if hasattr(getattr(cudnn, sub, None), "fp32_precision"):
            pairs.append((getattr(cudnn, sub), "fp32_precision"))
    return tuple(pairs) if all(hasattr(o, a) for o, a in pairs) else ()


@contextlib.contextmanager
def _fp32_matmul(tf32: bool):
    """float32 matmuls/convolutions in TF32 (``tf32=True``) or IEEE inside the block, restored after."""
    new = _fp32_switches()
    if new:
        old = [getattr(o, a) for o, a in new]
        try:
            for o, a in new:
                setattr(o, a, "tf32" if tf32 else "ieee")
            yield
        finally:
            for (o, a), v in zip(new, old):
                setattr(o, a, v)
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def no_tf32():
    """Full-precision float32 matmuls and convolutions inside the block (restored after)."""
    return _fp32_matmul(False)


@contextlib.contextmanager
def _deterministic(device: torch.device):
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    with contextlib.ExitStack() as stack:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old[0], warn_only=old[1])


@contextlib.contextmanager
def numerics(device, precision: str = "strict", deterministic: bool = True):
    """The block a sweep trains and evaluates in (module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got precision={precision!r}")
    device = resolve_device(device)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_fp32_matmul(precision != "strict"))
        if deterministic:
            stack.enter_context(_deterministic(device))
        if precision == "bf16":
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        yield
