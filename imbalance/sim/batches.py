"""Minibatches for a sweep: drawn on CPU from each seed's generator, moved to the device in chunks.

Seed s draws its batches from its own ``torch.Generator``; every λ of that seed sees the same
batches (common random numbers). ``chunk`` steps of batches are drawn and copied at once; on CUDA
the copy goes from pinned memory without blocking the host, so drawing the next chunk overlaps the
GPU's work.
"""

from __future__ import annotations

import torch

__all__ = ["BatchStream", "chunk_steps"]


def chunk_steps(eval_every: int, per_step_numel: int) -> int:
    """The largest divisor of ``eval_every`` whose chunk holds at most 2²² sampled numbers, so
    that a resume at a multiple of ``eval_every`` starts a fresh chunk and sees the same batches."""
    cap = max(1, 2 ** 22 // max(1, per_step_numel))
    return max(d for d in range(1, min(eval_every, cap) + 1) if eval_every % d == 0)


class BatchStream:
    """``batch(step)`` → (x, y) for all M = L·S models, each (M, B, ...) on ``device``."""

    def __init__(self, task, gens, batch_size: int, n_lams: int, chunk: int, device: torch.device, dtype):
        self.task, self.gens, self.B, self.L, self.chunk = task, gens, batch_size, n_lams, chunk
        self.device, self.dtype = device, dtype
        self._data = None
        self._pin = device.type == "cuda"

    def _draw(self):
        S, chunk, B = len(self.gens), self.chunk, self.B
        samples = [self.task.sample(g, chunk * B) for g in self.gens]
        out = []
        for i in range(len(samples[0])):
            t = torch.stack([s[i] for s in samples]).view(S, chunk, B, *samples[0][i].shape[1:])  # (S, chunk, B, ...)
            if t.is_floating_point():
                t = t.to(self.dtype)
            if self._pin:
                t = t.pin_memory()
            out.append(t.to(self.device, non_blocking=self._pin))
        return out

    def batch(self, step: int):
        if self._data is None or step % self.chunk == 0:
            self._data = self._draw()
        L = self.L
        return tuple(t[:, step % self.chunk].unsqueeze(0).expand(L, *t[:, 0].shape).reshape(-1, *t.shape[2:])
                     for t in self._data)  # each (M, B, ...)
