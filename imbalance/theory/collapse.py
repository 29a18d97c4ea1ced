"""Exact collapse laws of the weight-decayed UFM (T5) and factored bigram LM (T7): T8.

With weight decay a group of ≥ 2 classes that share one frequency π_G does not merge "in the
limit" but exactly (equal classifiers, cosine 1), and the threshold has a closed form
(proofs/T8_collapse_law.md):

* UFM, with or without an undecayed bias:  merged iff π_G ≤ λ_W λ_H   (μ² with μ = √(λ_Wλ_H));
* factored bigram LM, copy family (context k → token k, P(k) = π_k):
  merged iff π_G ≤ √(λ_W λ_E) untied, π_G ≤ λ/2 tied (one shared matrix decayed by λ).

The frequency-weighted nuclear norm of the UFM makes the threshold quadratic in μ, the unweighted
one of the LM linear. For the two-group family of Fang et al. (2021) (``two_group_pi``: K_A
classes with mass ∝ R, K_B ≥ 2 with mass ∝ 1, π_B = 1/(K_A R + K_B)) the threshold ratio is
R* = max(1, (1/π* − K_B)/K_A). Hong & Ling (2023, arXiv 2309.09725) derive this two-cluster
threshold for the UFM (their normalisation: see the proof file).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._validate import as_choice, as_distribution, as_positive_int
from .factored_bigram import factored_penalty_weight
from .nuclear import broadcast_lams

__all__ = ["ufm_collapse_frequency", "factored_collapse_frequency", "minority_collapse_threshold",
           "AllCollapse", "ufm_all_collapse"]


def _out(arr, scalar):
    return float(arr[0]) if scalar else arr


def ufm_collapse_frequency(lam_w, lam_h):
    """π* = λ_W λ_H: a group of ≥ 2 equally frequent UFM classes is merged iff π_G ≤ π*
    (with or without a bias). Scalars or 1-D arrays (broadcast; λ-leading)."""
    lw, lh, scalar = broadcast_lams(lam_w, "lam_w", lam_h, "lam_h")
    return _out(lw * lh, scalar)


def factored_collapse_frequency(lam_w=None, lam_e=None, *, tied: bool = False, lam=None):
    """π* of the factored bigram copy family: √(λ_Wλ_E) untied, λ/2 tied (one decay ``lam``);
    decays as in :func:`imbalance.theory.factored_bigram_equilibrium`."""
    if not isinstance(tied, (bool, np.bool_)):
        raise ValueError(f"tied must be True or False, got tied={tied!r}")
    return factored_penalty_weight(lam_w, lam_e, tied=bool(tied), lam=lam)


def minority_collapse_threshold(k_major: int, k_minor: int, lam_w=None, lam_h=None, *, model: str = "ufm",
                                tied: bool = False, lam=None, bias: bool = False, tol=None, ratio_max=None,
                                rel_precision=None):
    """Smallest imbalance ratio R of ``two_group_pi(k_major, k_minor, R)`` at which the minority
    classifiers merge exactly (T8): R* = max(1, (1/π* − K_B)/K_A), closed form, no solve.

    ``model="ufm"``: π* = λ_Wλ_H (``lam_w``, ``lam_h``; ``bias`` does not move it).
    ``model="factored"``: copy family of the factored LM, π* = √(λ_Wλ_E) (``lam_h`` is λ_E) or,
    with ``tied=True``, λ/2 for the one decay ``lam``. Returns a float, or an array for 1-D λ.
    ``tol``, ``ratio_max``, ``rel_precision`` belonged to an earlier bisection and are ignored.
    """
    ka = as_positive_int(k_major, "k_major")
    kb = as_positive_int(k_minor, "k_minor")
    if kb < 2:
        raise ValueError(f"k_minor must be >= 2 for two minority classifiers to merge, got k_minor={k_minor}")
    model = as_choice(model, "model", {"ufm", "factored"})
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"bias must be True or False, got bias={bias!r}")
    if any(v is not None for v in (tol, ratio_max, rel_precision)):
        warnings.warn("minority_collapse_threshold is a closed form: tol, ratio_max and rel_precision are ignored",
                      DeprecationWarning, stacklevel=2)
    if model == "ufm":
        if tied or lam is not None:
            raise ValueError(f"the UFM has no tied/lam decays; pass lam_w and lam_h, got tied={tied!r}, lam={lam!r}")
        pstar = ufm_collapse_frequency(lam_w, lam_h)
    else:
        pstar = factored_collapse_frequency(lam_w, lam_h, tied=tied, lam=lam)
    R = np.maximum(1.0, (1.0 / np.asarray(pstar, dtype=np.float64) - kb) / ka)
    return float(R) if np.ndim(pstar) == 0 else R


@dataclass(frozen=True)
class AllCollapse:
    """The UFM's trivial solution Z = 0: optimal iff μ = √(λ_Wλ_H) ≥ ``mu``; there every class
    has loss ``loss_per_token`` (log K without a bias, −log π_k with one)."""

    mu: float
    loss_per_token: np.ndarray


def ufm_all_collapse(pi, *, bias: bool = False) -> AllCollapse:
    """Z = 0 is optimal iff μ ≥ ‖D^{1/2}(𝟙uᵀ − I)‖₂, D = diag(π), u = 𝟙/K without a bias
    (softmax of 0) and u = π with one (the optimal bias is log π) (proofs/T5, Step 5)."""
    pi = as_distribution(pi, "pi")
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"bias must be True or False, got bias={bias!r}")
    K = pi.size
    u = pi if bias else np.full(K, 1.0 / K)
    G = np.sqrt(pi)[:, None] * (np.ones((K, 1)) * u[None, :] - np.eye(K))  # (K, K) ∇_Y f at Z = 0
    loss = -np.log(pi) if bias else np.full(K, np.log(K))
    return AllCollapse(mu=float(np.linalg.norm(G, 2)), loss_per_token=loss)
