"""Closed forms shared by the theory, the simulations, the metrics and the figures.

numpy only (no torch, no scipy), so every layer imports this module instead of
rewriting a formula:

* :func:`kappa` — κ = P r²/λ, the one number the L2 bigram fixed point of a context
  depends on (T2);
* :func:`adamw_rho` — ρ = √(Bπ/(1 + (B−1)π)), the gradient signal-to-noise ratio of a
  class seen with probability π in minibatches of B i.i.d. samples; the AdamW margin
  of the deterministic bigram is 2rρ/λ as ε → 0 (T3), and ρ-scaled row decay equalises
  it (T6a);
* :func:`logit_adjustment` — the post-hoc bias −τ log π (Menon et al. 2021,
  arXiv 2007.07314; T6c);
* :func:`unigram_small_lambda` and :func:`unigram_large_lambda` — the two asymptotes of
  the unigram logits (T1).

The symbolic counterparts are derived in ``imbalance.symbolic`` (``adamw.deterministic_rho``,
``bigram.bigram_fixed_point``, ``mitigation.logit_adjusted``) and the tests lambdify them
against these functions.
"""

from __future__ import annotations

import numpy as np

from ._validate import (
    as_distribution,
    as_frequencies,
    as_lams,
    as_nonnegative,
    as_positive,
    as_positive_int,
    as_real_array,
)

__all__ = ["kappa", "adamw_rho", "logit_adjustment", "unigram_small_lambda", "unigram_large_lambda"]


def _probabilities(pi, name: str) -> np.ndarray:
    """Entries of ``pi`` as float64 in [0, 1] (any shape, not necessarily summing to 1)."""
    arr = as_real_array(pi, name, "an array of probabilities")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        raise ValueError(f"{name} must hold probabilities in [0, 1], got {name} entry {arr[bad].ravel()[0]!r}")
    return arr


def kappa(context_prob, lam, r: float = 1.0) -> np.ndarray:
    """κ = P r²/λ (T2): under L2 the fixed point p = softmax(κ (q − p)) of a context with
    probability P, input norm r and weight decay λ depends on these three only through κ.

    Shape: λ leading, ``(n_λ, *P.shape)``, or ``P.shape`` for a scalar λ.

    >>> kappa([0.5, 0.25], 0.5).tolist()
    [1.0, 0.5]
    """
    P = _probabilities(context_prob, "context_prob")
    lams, scalar = as_lams(lam)
    r = as_positive(r, "r")
    with np.errstate(over="ignore", invalid="ignore"):
        out = P[None] * (r * r) / lams.reshape((-1,) + (1,) * P.ndim)
    if not np.isfinite(out).all():
        raise ValueError(f"kappa = P r²/λ overflows float64 for r={r!r} and lam down to {lams.min()!r}")
    return out[0] if scalar else out


def adamw_rho(pi, batch_size) -> np.ndarray:
    """ρ = √(Bπ / (1 + (B − 1)π)) = |E g|/√E g² of a class seen with probability π in
    minibatches of B i.i.d. samples (T3, deterministic target, ε → 0). Same shape as ``pi``.

    ρ → √(Bπ) for Bπ ≪ 1 and ρ → 1 for Bπ ≫ 1: tokens seen at least once per batch all
    get the same margin 2rρ/λ.

    >>> adamw_rho([0.0, 0.01, 1.0], 100).round(6).tolist()
    [0.0, 0.708881, 1.0]
    """
    P = _probabilities(pi, "pi")
    B = float(as_positive_int(batch_size, "batch_size"))
    if not np.isfinite(B * B):
        raise ValueError(f"batch_size={batch_size} is too large for float64 arithmetic")
    return np.sqrt(B * P / (1.0 + (B - 1.0) * P))


def logit_adjustment(pi, tau, *, unseen: str = "raise", name: str = "pi") -> np.ndarray:
    """The post-hoc logit adjustment −τ log π_v (V,) (Menon et al. 2021, T6c).

    Adding it to the logits of a Bayes predictor of the cross-entropy gives, at τ = 1, a
    Bayes predictor of the token-balanced cross-entropy. ``pi`` is normalised first (counts
    are fine). A token with π_v = 0 would get an infinite boost: ``unseen="raise"`` refuses
    it (when τ > 0), ``unseen="rarest"`` gives it the rarest seen token's boost. A constant
    shift does not change the adjusted softmax, so callers may recentre the result.

    >>> logit_adjustment([1, 1, 2], 1.0).round(6).tolist()
    [1.386294, 1.386294, 0.693147]
    """
    tau = as_nonnegative(tau, "tau")
    if unseen not in ("raise", "rarest"):
        raise ValueError(f"unseen must be 'raise' or 'rarest', got unseen={unseen!r}")
    p = as_frequencies(pi, name)
    if tau == 0:
        return np.zeros(p.size)
    if (p == 0).any():
        if unseen == "raise":
            v = int(np.flatnonzero(p == 0)[0])
            raise ValueError(f"{name} has zero entries ({name}[{v}] = 0) and tau={tau} > 0 would give token {v} "
                             f"an infinite logit; pass a smoothed {name}")
        p = np.where(p > 0, p, p[p > 0].min())
    return -tau * np.log(p)


def unigram_small_lambda(pi) -> tuple[np.ndarray, np.ndarray]:
    """(b⁰, ∂b/∂λ at λ = 0) of the unigram logits (T1): b⁰ = log π − mean(log π), the
    logit-adjustment prior, and ∂b_k/∂λ|₀ = −b⁰_k/π_k + (1/K) Σ_j b⁰_j/π_j (the shift is
    amplified by 1/π for rare tokens). Needs every π_k > 0.

    >>> b0, slope = unigram_small_lambda([0.5, 0.5])
    >>> b0.tolist(), slope.tolist()
    ([0.0, 0.0], [0.0, 0.0])
    """
    p = as_distribution(pi, "pi")
    if (p == 0).any():
        raise ValueError(f"pi must be positive for the small-λ expansion, got pi[{int(np.argmin(p))}] = 0")
    logp = np.log(p)
    b0 = logp - logp.mean()
    return b0, -b0 / p + np.mean(b0 / p)


def unigram_large_lambda(pi, lam) -> np.ndarray:
    """The large-λ unigram logits b_k ≈ (π_k − 1/K)/λ (T1), λ leading.

    >>> unigram_large_lambda([0.75, 0.25], 10.0).tolist()
    [0.025, -0.025]
    """
    p = as_distribution(pi, "pi")
    lams, scalar = as_lams(lam)
    with np.errstate(over="ignore"):
        out = (p[None] - 1.0 / p.size) / lams[:, None]
    if not np.isfinite(out).all():
        raise ValueError(f"(π − 1/K)/λ overflows float64 for lam down to {lams.min()!r}")
    return out[0] if scalar else out
