"""Simulation next to theory: the only module of ``imbalance.sim`` that imports ``imbalance.theory``.

Each helper runs (or takes) a sweep and returns the prediction, the simulation and the
per-token relative error |sim − theory| / theory, with λ leading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch

__all__ = ["feature_lbfgs", "deterministic_margins", "Comparison", "compare_margins", "compare_bigram",
           "compare_factored"]


@dataclass(frozen=True)
class Comparison:
    """``theory`` (L, V); ``sim`` (L, S, V) per seed; ``rel_error`` = |mean_seed(sim) − theory|/|theory|
    (L, V); ``sem`` (L, V): standard error of the seed mean (NaN with one seed)."""

    lams: np.ndarray
    theory: np.ndarray
    sim: np.ndarray
    rel_error: np.ndarray
    sem: np.ndarray


def _compare(lams, theory, sim) -> Comparison:
    theory = np.asarray(theory, dtype=np.float64).reshape(len(lams), -1)
    sim = np.asarray(sim, dtype=np.float64)
    mean = sim.mean(1)
    S = sim.shape[1]
    sem = sim.std(1, ddof=1) / np.sqrt(S) if S > 1 else np.full_like(mean, np.nan)
    return Comparison(np.asarray(lams), theory, sim, np.abs(mean - theory) / np.abs(theory), sem)


def deterministic_margins(W: torch.Tensor | np.ndarray, r: float = 1.0) -> np.ndarray:
    """Margins m_k = z_kk − mean_{j≠k} z_kj of a (..., K, K) logit table with logits z = r W."""
    W = np.asarray(W, dtype=np.float64)
    K = W.shape[-1]
    diag = np.diagonal(W, axis1=-2, axis2=-1)
    return r * (diag - (W.sum(-1) - diag) / (K - 1))


def feature_lbfgs(task, lam: float, bias: bool = True, gtol: float = 1e-12):
    """L-BFGS (scipy, float64) minimiser of mean CE + (λ/2)‖W‖² on a FeatureTask's points.

    Returns (W (K, D), b (K,) or None, loss_per_token (K,)). The bias is undecayed and
    defined up to a constant shift; it is returned centred (mean 0).
    """
    H = task.features.numpy()
    y = task.labels.numpy()
    K, D, n = task.K, H.shape[1], y.size
    Y = np.eye(K)[y]

    def fg(theta):
        W = theta[:K * D].reshape(K, D)
        b = theta[K * D:] if bias else 0.0
        z = H @ W.T + b
        z = z - z.max(1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(1, keepdims=True))
        G = (np.exp(lp) - Y) / n
        grad = [(G.T @ H + lam * W).ravel()] + ([G.sum(0)] if bias else [])
        return -(Y * lp).sum() / n + 0.5 * lam * (W ** 2).sum(), np.concatenate(grad)

    res = scipy.optimize.minimize(fg, np.zeros(K * D + (K if bias else 0)), jac=True, method="L-BFGS-B",
                                  options=dict(gtol=gtol, ftol=1e-16, maxiter=20000))
    W = res.x[:K * D].reshape(K, D)
    b = res.x[K * D:] - res.x[K * D:].mean() if bias else None
    z = H @ W.T + (b if bias else 0.0)
    lp = z - scipy.special.logsumexp(z, axis=1, keepdims=True)
    ce = -lp[np.arange(n), y]
    lpt = np.bincount(y, weights=ce, minlength=K) / np.bincount(y, minlength=K)
    return W, b, lpt


def _opt_args(result, eps):
    kw = {"optimizer": result.optimizer}
    if result.optimizer == "adamw":
        kw.update(batch_size=result.batch_size, eps=eps)
    return kw


def _lams_for_theory(result):
    lams = np.asarray(result.lams, dtype=np.float64)
    if (lams <= 0).any():
        raise ValueError(f"theory needs λ > 0, the sweep has lams={lams.tolist()}")
    return lams


def compare_margins(result, task, *, eps: float = 1e-8, averaged: bool = True) -> Comparison:
    """Deterministic bigram (context k → token k): sweep margins vs ``margin_law`` (T2 SGD, T3 AdamW).

    Uses the iterate average over the sweep's last ``average_last`` steps when available
    (the AdamW equilibrium is a noisy stationary state: proofs/T3_adamw.md).
    """
    from ..theory import margin_law

    J = task.joint
    if J.shape[0] != J.shape[1] or np.count_nonzero(J - np.diag(np.diag(J))):
        raise ValueError("compare_margins needs a deterministic bigram task (diagonal counts)")
    lams = _lams_for_theory(result)
    params = result.params_avg if (averaged and result.params_avg is not None) else result.params
    theory = margin_law(np.diag(J), lams, r=task.r, **_opt_args(result, eps)).margins
    return _compare(lams, theory, deterministic_margins(params["W"].numpy(), task.r))


def compare_bigram(result, task, *, eps: float = 1e-8, averaged: bool = True) -> Comparison:
    """Any bigram task: sweep per-token loss vs ``bigram_equilibrium`` (SGD or AdamW)."""
    from ..theory import bigram_equilibrium

    lams = _lams_for_theory(result)
    sim = result.loss_per_token_avg if (averaged and result.loss_per_token_avg is not None) else result.loss_per_token
    eq = bigram_equilibrium(task.counts, lams, r=task.r, **_opt_args(result, eps))
    return _compare(lams, eq.loss_per_token, sim)


def compare_factored(result, task, *, tied: bool = False, averaged: bool = True) -> Comparison:
    """Factored bigram (E, W both decayed by λ): sweep per-token loss vs the T7 convex optimum.

    Untied: λ_W = λ_E = λ, penalty λ‖Z‖_*. Tied (one matrix E decayed by λ, W = E):
    (λ/2)‖E‖² = (λ/2) tr Z. The theory is the L2 optimum,
    so it predicts SGD; for AdamW the comparison measures how far decoupled decay lands.
    Needs ``imbalance.theory.factored_bigram_equilibrium`` and r = 1.
    """
    from ..theory.factored_bigram import factored_bigram_equilibrium

    if task.r != 1.0:
        raise ValueError(f"compare_factored needs r = 1 (T7 has no input norm), got r={task.r}")
    lams = _lams_for_theory(result)
    eq = factored_bigram_equilibrium(task.counts, lam=lams, tied=tied)
    sim = result.loss_per_token_avg if (averaged and result.loss_per_token_avg is not None) else result.loss_per_token
    return _compare(lams, eq.loss_per_token, sim)
