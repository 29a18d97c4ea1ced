"""Device choice: "auto" = cuda > mps > cpu, overridden by the IMBALANCE_DEVICE variable."""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["resolve_device", "no_tf32"]


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


@contextlib.contextmanager
def no_tf32():
    """Full-precision float32 matmuls and convolutions inside the block (restored after)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
