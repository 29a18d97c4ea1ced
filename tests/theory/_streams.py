"""Synthetic Zipfian token streams with learnable bigram structure (for tests and benchmarks)."""

from __future__ import annotations

import numpy as np

from imbalance.zipf import zipf_pmf


def zipf_markov_stream(V: int, n_tokens: int, rng: np.random.Generator, *, s: float = 1.0,
                       follow: float = 0.5, block: int = 8) -> np.ndarray:
    """Tokens x_t: with probability ``follow`` the successor succ(x_{t-1}), otherwise a fresh
    Zipf(s) draw. succ permutes ranks within blocks of ``block`` consecutive ranks, so the
    target marginal stays close to Zipf and every token, rare ones included, is predictable
    from its context (what the paradox needs, DESIGN.md "What the paradox needs")."""
    pmf = zipf_pmf(V, s)
    fresh = rng.choice(V, size=n_tokens, p=pmf)
    follow_mask = rng.random(n_tokens) < follow
    follow_mask[0] = False
    succ = np.arange(V)
    for start in range(0, V, block):
        stop = min(start + block, V)
        succ[start:stop] = start + rng.permutation(stop - start)
    x = fresh.copy()
    while True:  # x_t = succ(x_{t-1}) on follow steps; runs are geometric, so few sweeps
        new = np.where(follow_mask, np.concatenate([[x[0]], succ[x[:-1]]]), fresh)
        if np.array_equal(new, x):
            return x
        x = new
