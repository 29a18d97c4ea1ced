"""Predicted learning curves of the factored bigram (T7) under gradient descent / SGD with L2.

Logits z_x = r W e_x (context embedding E (n_ctx × d), unembedding W (V × d)), objective

    F(E, W) = Σ_x P(x) CE(q(·|x), r W e_x) + (λ_E/2)‖E‖² + (λ_W/2)‖W‖²,

trained from a given start (E₀, W₀): the simulation's ``FactoredBigram`` draws it i.i.d.
N(0, init_scale²) per seed, so a prediction is made per start. The recursion
θ ← θ − η ∇F(θ) is full-batch gradient descent with coupled L2 exactly, and the mean path of
minibatch SGD to first order in η (the same drift argument as the one-hot bigram,
``proofs/T11_token_dynamics.md``). The objective is not convex: the path, not only the
equilibrium, depends on the start. Cost O(n_ctx · V · d) per step (dense). The AdamW flow of
this model lives with the AdamW shared-representation theory, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax

from .._validate import as_count_matrix, as_nonnegative, as_positive, as_positive_int
from .dynamics import eval_steps

__all__ = ["FactoredTrajectory", "factored_gd_trajectory"]


@dataclass(frozen=True)
class FactoredTrajectory:
    """``loss_per_token`` (n_start, n_eval, V) for each start (seed) along ``steps``; NaN if π_v = 0."""

    lam_E: float
    lam_W: float
    lr: float
    steps: np.ndarray
    token_probs: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: np.ndarray


def _starts(arr, name, rows):
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != rows or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a finite ([n_start,] {rows}, d) array, got shape {np.shape(arr)}")
    return a


def factored_gd_trajectory(counts, E0, W0, *, lam, steps, lr, r=1.0, lam_W=None, eval_every=None
                           ) -> FactoredTrajectory:
    """Per-token loss along gradient descent with coupled L2 on F from each start (E₀, W₀).

    ``E0`` (n_start, n_ctx, d) or (n_ctx, d), ``W0`` (n_start, V, d) or (V, d); ``lam`` decays E
    (and W unless ``lam_W`` is given). Logged at ``eval_steps(steps, eval_every)``, as the sweep.
    """
    C = as_count_matrix(counts, "counts")
    n_ctx, V = C.shape
    E = _starts(E0, "E0", n_ctx).copy()
    W = _starts(W0, "W0", V).copy()
    if E.shape[0] != W.shape[0] or E.shape[2] != W.shape[2]:
        raise ValueError(f"E0 and W0 must have the same number of starts and width, got {E.shape} and {W.shape}")
    lam_E = as_nonnegative(lam, "lam")
    lam_W = lam_E if lam_W is None else as_nonnegative(lam_W, "lam_W")
    steps = as_positive_int(steps, "steps")
    lr = as_positive(lr, "lr")
    r = as_positive(r, "r")
    J = np.asarray(C.todense()) / C.data.sum()  # (n_ctx, V)
    P = J.sum(1, keepdims=True)  # (n_ctx, 1)
    pi = J.sum(0)
    seen = pi > 0
    log_at = eval_steps(steps, eval_every)
    out = []

    def record(logp):  # logp (S, n_ctx, V)
        loss = np.full((E.shape[0], V), np.nan)
        loss[:, seen] = -(J * np.where(J > 0, logp, 0.0)).sum(1)[:, seen] / pi[seen]
        out.append(loss)

    k = 0
    for t in range(steps + 1):
        logp = log_softmax(r * E @ W.transpose(0, 2, 1), axis=-1)  # (S, n_ctx, V)
        if k < log_at.size and t == log_at[k]:
            record(logp)
            k += 1
        if t == steps:
            break
        G = P * np.exp(logp) - J  # (S, n_ctx, V) ∂/∂z of Σ_x P(x) CE
        gE = r * G @ W + lam_E * E  # (S, n_ctx, d)
        gW = r * G.transpose(0, 2, 1) @ E + lam_W * W  # (S, V, d)
        E -= lr * gE
        W -= lr * gW
    loss = np.stack(out, 1)  # (S, n_eval, V)
    agg = (loss[..., seen] * pi[seen]).sum(-1)
    return FactoredTrajectory(lam_E=lam_E, lam_W=lam_W, lr=lr, steps=log_at, token_probs=pi, loss_per_token=loss,
                              aggregate_loss=agg)
