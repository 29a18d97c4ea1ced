"""T1: the unigram (bias-only) softmax model with L2 weight decay, solved exactly."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_distribution, as_lams, drop_lam_axis
from . import fixed_point
from .fixed_point import L2Response, Layout, exact_defect

__all__ = ["UnigramEquilibrium", "unigram_equilibrium"]


@dataclass(frozen=True)
class UnigramEquilibrium:
    """Minimiser of −Σ π_k log softmax(b)_k + (λ/2)‖b‖².

    Array fields have λ as leading axis when ``lam`` was an array, none when it was
    a scalar. ``log_partition`` is log Σ exp b; ``objective`` the minimum value.
    """

    lam: np.ndarray | float
    logits: np.ndarray
    probs: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: np.ndarray | float
    token_balanced_loss: np.ndarray | float
    log_partition: np.ndarray | float
    objective: np.ndarray | float


def unigram_equilibrium(pi, lam) -> UnigramEquilibrium:
    """Exact minimiser of the L2-regularised unigram model (T1).

    Stationarity gives λ b = π − p, so Σ b = 0 and, with ω the Wright omega function,
    p_k = λ ω(π_k/λ − t) where t is the unique root of Σ_k λ ω(π_k/λ − t) = 1 and
    b_k = (π_k − p_k)/λ (``proofs/T1_unigram.md``). The root is found by safeguarded
    Newton on log Σ p (``imbalance.theory.fixed_point``). Probabilities and losses are
    within 1e-9 relative of a 40-digit mpmath reference for λ from 1e-12 to 1e6 (the
    tolerance ``tests/theory/test_unigram.py`` checks; observed errors are far smaller).
    The small- and large-λ asymptotes are ``imbalance.formulas.unigram_small_lambda`` and
    ``unigram_large_lambda``.

    >>> eq = unigram_equilibrium([0.5, 0.3, 0.2], 1.0)
    >>> eq.probs.round(6).tolist()
    [0.375772, 0.324003, 0.300225]
    >>> bool(abs(eq.logits.sum()) < 1e-15)  # Σ b = 0
    True
    """
    pi = as_distribution(pi, "pi")
    pi = pi / pi.sum()  # the problem is posed for Σπ = 1 exactly; inputs may be off by 1e-9
    lams, scalar = as_lams(lam)
    L, K = lams.size, pi.size
    with np.errstate(over="ignore"):
        if not np.isfinite(1.0 / lams).all():
            raise ValueError(f"lam must be >= {1 / np.finfo(float).max:.3g} (1/λ overflows float64), "
                             f"got lam={lams.min()!r}")
    defect = exact_defect(pi, np.ones(K), np.array([0]))
    layout = Layout(seg=np.repeat(np.arange(L), K), q=np.tile(pi, L), mult=np.ones(L * K), n_seg=L,
                    defect=np.repeat(defect, L))
    kappa = np.repeat(1.0 / lams, K)
    sol = fixed_point.solve(layout, L2Response(kappa, layout.q))
    probs = sol.p.reshape(L, K)
    logits = sol.logits.reshape(L, K)
    loss = -sol.logp.reshape(L, K)
    agg = loss @ pi
    objective = agg + 0.5 * lams * np.einsum("lk,lk->l", logits, logits)
    out = dict(logits=logits, probs=probs, loss_per_token=loss, aggregate_loss=agg,
               token_balanced_loss=loss.mean(axis=1), log_partition=sol.s, objective=objective)
    return UnigramEquilibrium(lam=float(lams[0]) if scalar else lams, **drop_lam_axis(out, scalar))
