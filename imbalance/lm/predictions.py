"""What the exactly solvable models predict for a real token stream, for the LM report.

* T3 (AdamW equilibrium, one-hot contexts): a token's gradient signal-to-noise ratio is
  ρ(B·π) = √(Bπ / (1 + (B − 1)π)) (``imbalance.formulas.adamw_rho``; B = tokens per batch), and
  its equilibrium margin is ∝ ρ/λ. Tokens seen at least once per batch (B·π ≳ 1) all get
  ρ ≈ 1; rarer ones get ρ ≈ √(Bπ): at every λ their margin is smaller by that factor.
* T7 (factored bigram LM, L2 decay) on the *same* training stream: the exact per-bucket
  training loss of min over tied (E) or untied (W, E) factors of the bigram cross-entropy +
  decay (``imbalance.theory.factored_bigram_equilibrium``); at λ = 0 (width ≥ V) it is the
  empirical conditional entropy −log q(v | previous token) per target.
* T8 (exact collapse law of the factored LM's copy family): a token needs π > π*(λ) to keep a
  direction of its own, π* = λ/2 tied and √(λ_W λ_E) = λ untied
  (``imbalance.theory.factored_collapse_frequency``).

The T7/T8 λ is an L2 coefficient; AdamW's decoupled decay is not an L2 penalty (T3: its
equilibrium weights scale as ρ/λ, independent of the gradient's size), so the two λ axes are
not one scale: the report draws T7 on its own axis and compares shapes, not values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._validate import as_positive_int
from ..formulas import adamw_rho
from ..theory import factored_bigram_equilibrium, factored_collapse_frequency
from ..zipf import frequency_buckets
from .losses import loss_summary

__all__ = ["T3Lines", "t3_lines", "bigram_counts", "FactoredLines", "factored_lines", "default_factored_lams"]


@dataclass(frozen=True)
class T3Lines:
    """Per frequency bucket (n_b,): token types, mean ρ(B·π) (T3), share of types with B·π < 1,
    and the predicted margin relative to the head bucket at any λ (mean ρ / head's mean ρ)."""

    tokens_per_batch: int
    bucket_types: np.ndarray
    rho: np.ndarray
    below_one_per_batch: np.ndarray
    margin_ratio: np.ndarray
    below_one_per_batch_all: float  # over all types with π > 0


def t3_lines(token_probs, tokens_per_batch: int, *, scheme: str = "log3") -> T3Lines:
    pi = np.asarray(token_probs, dtype=np.float64)  # (V,)
    B = as_positive_int(tokens_per_batch, "tokens_per_batch")
    ids = frequency_buckets(pi, scheme=scheme)  # (V,)
    seen = ids >= 0
    n_b = int(ids.max()) + 1
    rho = adamw_rho(pi[seen], B)  # (V_seen,)
    types = np.bincount(ids[seen], minlength=n_b)  # (n_b,)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rho = np.bincount(ids[seen], weights=rho, minlength=n_b) / types  # (n_b,)
        below = np.bincount(ids[seen], weights=(B * pi[seen] < 1).astype(float), minlength=n_b) / types
    return T3Lines(B, types, mean_rho, below, mean_rho / mean_rho[0], float((B * pi[seen] < 1).mean()))


def bigram_counts(ids, vocab_size: int) -> sp.csr_matrix:
    """(V, V) counts of consecutive pairs (previous token, next token) of the id stream ``ids``."""
    ids = np.asarray(ids, dtype=np.int64)  # (N,)
    V = as_positive_int(vocab_size, "vocab_size", minimum=2)
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(f"ids must be a 1-D stream of at least 2 tokens, got shape {ids.shape}")
    C = sp.csr_matrix((np.ones(ids.size - 1), (ids[:-1], ids[1:])), shape=(V, V))
    C.sum_duplicates()
    return C


@dataclass(frozen=True)
class FactoredLines:
    """T7/T8 on a token stream, λ-leading: per-bucket training loss (n_λ, n_b) of the factored
    bigram optimum, its aggregate and token-balanced loss (n_λ,), the collapse frequency
    π*(λ) (n_λ,) and the share of token types with 0 < π ≤ π* (n_λ,)."""

    lams: np.ndarray
    tied: bool
    bucket_loss: np.ndarray
    aggregate: np.ndarray
    token_balanced: np.ndarray
    collapse_frequency: np.ndarray
    below_collapse: np.ndarray


def _empirical_entropy_sums(C: sp.csr_matrix) -> np.ndarray:
    """Σ over a target's occurrences of −log q(v | x), q the empirical bigram law (the λ = 0 optimum)."""
    Cc = C.tocoo()
    row_tot = np.asarray(C.sum(axis=1)).ravel()  # (V,)
    nll = -np.log(Cc.data / row_tot[Cc.row])  # (nnz,)
    return np.bincount(Cc.col, weights=Cc.data * nll, minlength=C.shape[1])  # (V,)


def default_factored_lams(token_probs, *, tied: bool = True) -> np.ndarray:
    """λ = 0 and the three L2 decays whose T8 collapse frequency π* is π_max/9, π_max/27 and
    π_max/81 (λ = 2π* tied, λ = π* untied): by T8's copy-family line they leave the two, three
    and four most frequent buckets (log3) a direction of their own. (At π* = π_max/3 the
    optimum on real text is already Z = 0, and below π_max/81 the solve grows slow.)"""
    pmax = float(np.max(token_probs))
    return np.array([0.0, *(pmax / 3.0 ** k * (2.0 if tied else 1.0) for k in (4, 3, 2))])  # ascending


def factored_lines(counts: sp.csr_matrix, token_probs, lams, *, tied: bool = True, scheme: str = "log3",
                   rtol: float = 1e-6) -> FactoredLines:
    """The factored bigram LM's exact optimum (T7) and collapse frequency (T8) at each L2 decay
    in ``lams`` (λ = 0: the empirical bigram law), buckets by ``token_probs`` as the report's."""
    lams = np.atleast_1d(np.asarray(lams, dtype=np.float64))
    pi = np.asarray(token_probs, dtype=np.float64)  # (V,)
    target = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel()  # (V,)
    pos = lams > 0
    sums = np.empty((lams.size, pi.size))  # (n_λ, V) loss sums per target id
    if (~pos).any():
        sums[~pos] = _empirical_entropy_sums(counts)
    if pos.any():
        kw = {"lam": lams[pos], "tied": True} if tied else {"lam": lams[pos]}
        eq = factored_bigram_equilibrium(counts, rtol=rtol, **kw)
        sums[pos] = np.nan_to_num(eq.loss_per_token) * target  # (n_pos, V)
    rows = [loss_summary(s, target.astype(np.int64), pi, scheme=scheme) for s in sums]
    pstar = np.zeros(lams.size)
    if pos.any():
        pstar[pos] = factored_collapse_frequency(lam=lams[pos], tied=tied)
    seen = pi > 0
    below = np.array([float((pi[seen] <= p).mean()) if p > 0 else 0.0 for p in pstar])
    return FactoredLines(lams, bool(tied), np.array([r["bucket_loss"] for r in rows], dtype=np.float64),
                         np.array([r["aggregate"] for r in rows]), np.array([r["token_balanced"] for r in rows]),
                         pstar, below)
