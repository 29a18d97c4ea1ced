"""Token streams: word-level tokenisation of a user's text, synthetic Zipfian Markov
streams, and their bigram count matrices."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import scipy.sparse as sp

from ._validate import allocation, as_nonnegative, as_positive_int, as_real
from .zipf import zipf_pmf

__all__ = ["tokenize_words", "bigram_counts", "zipf_transition_matrix", "zipf_markov_stream",
           "zipf_successor_stream"]

UNK = "<unk>"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize_words(text: str, vocab_size: int) -> tuple[np.ndarray, list[str]]:
    """Lower-cased word/punctuation tokens; the ``vocab_size − 1`` most frequent types
    keep their own id (0 = most frequent), every other token maps to ``<unk>`` (the last id).

    >>> ids, vocab = tokenize_words("the cat saw the dog. The end", 4)
    >>> vocab, ids.tolist()
    (['the', 'cat', 'saw', '<unk>'], [0, 1, 2, 0, 3, 3, 0, 3])
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    vocab_size = as_positive_int(vocab_size, "vocab_size", minimum=2)
    tokens = _WORD.findall(text.lower())
    if not tokens:
        raise ValueError("text contains no tokens")
    counts = Counter(tokens)
    # ties broken by first occurrence, so the vocabulary is deterministic
    first = {}
    for i, t in enumerate(tokens):
        first.setdefault(t, i)
    kept = sorted(counts, key=lambda t: (-counts[t], first[t]))[: vocab_size - 1]
    vocab = kept + [UNK]
    index = {t: i for i, t in enumerate(kept)}
    unk = len(vocab) - 1
    ids = np.fromiter((index.get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))
    return ids, vocab


def bigram_counts(ids, vocab_size: int) -> sp.csr_matrix:
    """(vocab × vocab) CSR matrix of consecutive pairs (ids[t], ids[t+1])."""
    ids = np.asarray(ids)
    vocab_size = as_positive_int(vocab_size, "vocab_size", minimum=2)
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(f"ids must be a 1-D array of at least 2 tokens, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"ids must lie in [0, {vocab_size}), got range [{ids.min()}, {ids.max()}]")
    with allocation("vocab_size", vocab_size):
        C = sp.csr_matrix((np.ones(ids.size - 1), (ids[:-1], ids[1:])), shape=(vocab_size, vocab_size))
    C.sum_duplicates()
    return C


def zipf_transition_matrix(V: int, *, s: float = 1.1, sharpness: float = 3.0, seed: int = 0) -> np.ndarray:
    """A (V × V) transition matrix T whose stationary law is exactly Zipf(s).

    The joint law of consecutive tokens is J = diag(π) T, a coupling of π with itself:
    Sinkhorn scaling of exp(sharpness · G), G i.i.d. standard normal, to both marginals π.
    ``sharpness = 0`` gives J = π ⊗ π (the context is useless); larger values concentrate
    each row on a few successors, so the next token becomes predictable from the current one.
    """
    V = as_positive_int(V, "V", minimum=2)
    s = as_nonnegative(s, "s")
    beta = as_nonnegative(sharpness, "sharpness")
    seed = as_positive_int(seed, "seed", minimum=0)
    with allocation("V", V):
        pi = zipf_pmf(V, s)
        if not (pi > 0).all():
            raise ValueError(f"s={s!r} makes Zipf(s) underflow to probability 0 for {int((pi == 0).sum())} of "
                             f"V={V} tokens; use a smaller s")
        logK = beta * np.random.default_rng(seed).standard_normal((V, V))
    logpi = np.log(pi)
    f = np.zeros(V)
    g = np.zeros(V)
    for _ in range(2000):  # log-domain Sinkhorn: rows and columns of exp(logK + f + g) sum to π
        f = logpi - np.logaddexp.reduce(logK + g[None, :], axis=1)
        g = logpi - np.logaddexp.reduce(logK + f[:, None], axis=0)
        err = np.abs(np.exp(np.logaddexp.reduce(logK + f[:, None] + g[None, :], axis=1)) - pi).max()
        if err <= 1e-12:
            break
    J = np.exp(logK + f[:, None] + g[None, :])
    return J / J.sum(axis=1, keepdims=True)


def zipf_markov_stream(V: int, n_tokens: int, *, s: float = 1.1, sharpness: float = 3.0,
                       seed: int = 0) -> np.ndarray:
    """A stationary first-order Markov stream whose marginal is Zipf(s) (up to sampling
    error), with transitions from :func:`zipf_transition_matrix`."""
    n_tokens = as_positive_int(n_tokens, "n_tokens", minimum=2)
    T = zipf_transition_matrix(V, s=s, sharpness=sharpness, seed=seed)
    rng = np.random.default_rng([seed, 1])
    cum = np.cumsum(T, axis=1)
    cum /= cum[:, -1:]
    with allocation("n_tokens", n_tokens):
        u = rng.random(n_tokens)
        ids = np.empty(n_tokens, dtype=np.int64)
    x = int(rng.choice(T.shape[0], p=zipf_pmf(T.shape[0], s)))
    for t in range(n_tokens):
        x = min(int(np.searchsorted(cum[x], u[t], side="right")), T.shape[0] - 1)
        ids[t] = x
    return ids


def _generator(seed, name: str) -> np.random.Generator:
    """A numpy Generator from an int seed ≥ 0, or the Generator itself."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be an int >= 0 or a numpy.random.Generator, got {name}={seed!r:.80}")
    return np.random.default_rng(int(seed))


def zipf_successor_stream(V: int, n_tokens: int, seed=0, *, s: float = 1.0, follow: float = 0.5, block: int = 8,
                          rng=None) -> np.ndarray:
    """Tokens x_t: with probability ``follow`` the successor succ(x_{t−1}), otherwise a fresh
    Zipf(s) draw. succ permutes ranks within blocks of ``block`` consecutive ranks, so the
    marginal stays close to Zipf and every token, rare ones included, is predictable from
    its context — what the paradox needs (a token can only lose what it had learned).

    ``seed``: an int ≥ 0, as for :func:`zipf_markov_stream`, or a ``numpy.random.Generator`` to
    draw from; ``rng`` is its earlier name, still accepted."""
    V = as_positive_int(V, "V", minimum=2)
    n_tokens = as_positive_int(n_tokens, "n_tokens", minimum=2)
    block = as_positive_int(block, "block")
    follow = as_real(follow, "follow")
    if not 0.0 <= follow <= 1.0:
        raise ValueError(f"follow must be in [0, 1], got follow={follow!r}")
    rng = _generator(seed, "seed") if rng is None else _generator(rng, "rng")
    with allocation("V", V):
        pmf = zipf_pmf(V, s)
    with allocation("n_tokens", n_tokens):
        fresh = rng.choice(V, size=n_tokens, p=pmf)
        follow_mask = rng.random(n_tokens) < follow
    follow_mask[0] = False
    succ = np.arange(V)
    for start in range(0, V, block):
        stop = min(start + block, V)
        succ[start:stop] = start + rng.permutation(stop - start)
    x = fresh.copy()
    while True:  # x_t = succ(x_{t−1}) on follow steps; runs are geometric, so few sweeps
        new = np.where(follow_mask, np.concatenate([[x[0]], succ[x[:-1]]]), fresh)
        if np.array_equal(new, x):
            return x
        x = new
