"""The split of a trained bigram model's per-token loss into what decay takes and what is not learned yet.

For a run of ``steps`` optimiser steps at weight decay λ, both parts predicted, no fit:

    ℓ_v(T) = H_v                      (Bayes: −log q(v|x) averaged over v's occurrences)
           + [ℓ_v^eq(λ) − H_v]         (decay: the equilibrium of T2 / T3 at this λ)
           + [ℓ_v(T) − ℓ_v^eq(λ)]      (transient: still to go, from ``bigram_trajectory``)

The decay part is ``bigram_equilibrium`` (λ > 0; at λ = 0 the equilibrium is the Bayes
predictor p = q, for gradient descent and Adam alike); the transient is the predicted
trajectory's last value minus it. The measured loss of a simulation sits beside them.
The learning-speed metric (normalised area under ℓ_v(t), ``imbalance.metrics.learning_speed``)
is predicted from the same trajectory, per token and per bucket (area under the bucket's
mass-weighted loss curve).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_count_matrix
from ..metrics import bucket_loss, learning_speed
from .bigram import bigram_equilibrium
from .dynamics import bigram_trajectory

__all__ = ["LossSplit", "loss_split", "sweep_loss_split", "bayes_loss_per_token"]


@dataclass(frozen=True)
class LossSplit:
    """Per token (L, V) and per frequency bucket (L, n_b), λ leading (always an axis here).

    ``bayes`` H_v, ``equilibrium`` ℓ^eq, ``predicted`` ℓ(T), ``transient`` = predicted −
    equilibrium, ``decay`` = equilibrium − bayes, ``measured``/``measured_sem`` the seed mean
    and its standard error (None without a measurement); ``learning_speed`` predicted (and
    ``measured_learning_speed`` from a measured curve). Buckets: ``bucket_ids`` of
    ``imbalance.zipf.frequency_buckets``, losses mass-weighted (``imbalance.metrics.bucket_loss``).
    """

    lam: np.ndarray
    optimizer: str
    steps: int
    token_probs: np.ndarray
    bayes: np.ndarray
    equilibrium: np.ndarray
    predicted: np.ndarray
    transient: np.ndarray
    decay: np.ndarray
    measured: np.ndarray | None
    measured_sem: np.ndarray | None
    learning_speed: np.ndarray
    measured_learning_speed: np.ndarray | None
    bucket_ids: np.ndarray
    bucket_bayes: np.ndarray
    bucket_equilibrium: np.ndarray
    bucket_predicted: np.ndarray
    bucket_transient: np.ndarray
    bucket_decay: np.ndarray
    bucket_measured: np.ndarray | None
    bucket_measured_sem: np.ndarray | None
    bucket_learning_speed: np.ndarray
    bucket_measured_learning_speed: np.ndarray | None


def bayes_loss_per_token(counts) -> np.ndarray:
    """H_v = Σ_x J(x, v)(−log q(v|x))/π_v (V,), the loss of the Bayes predictor p = q; NaN if π_v = 0."""
    C = as_count_matrix(counts, "counts")
    row_n = np.asarray(C.sum(axis=1)).ravel()
    row_of_nz = np.repeat(np.arange(C.shape[0]), np.diff(C.indptr))
    nll = -np.log(C.data / row_n[row_of_nz])
    V = C.shape[1]
    target_n = np.bincount(C.indices, weights=C.data, minlength=V)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(target_n > 0, np.bincount(C.indices, weights=C.data * nll, minlength=V) / target_n, np.nan)


def _equilibrium(C, lams, *, optimizer, r, batch_size, eps):
    out = np.tile(bayes_loss_per_token(C), (lams.size, 1))  # (L, V), λ = 0 rows stay Bayes
    pos = lams > 0
    if pos.any():
        eq = bigram_equilibrium(C, lams[pos], r=r, optimizer=optimizer, eps=eps,
                                batch_size=batch_size if optimizer == "adamw" else None)
        out[pos] = eq.loss_per_token
    return out


def _sem(x):
    """(seed mean, standard error) over axis −2 of (..., S, V); no standard error for one seed."""
    S = x.shape[-2]
    return x.mean(-2), (x.std(-2, ddof=1) / np.sqrt(S) if S > 1 else None)


def loss_split(counts, lam, *, steps, lr, optimizer="sgd", r=1.0, batch_size=None, eps=1e-8, betas=(0.9, 0.999),
               eval_every=None, measured=None, measured_curve=None, scheme="log3", n_groups=10) -> LossSplit:
    """Split the loss after ``steps`` steps into Bayes + decay + transient, per token and bucket.

    Optimiser arguments as in ``bigram_trajectory`` (``batch_size`` is required for AdamW,
    whose equilibrium depends on it). ``measured`` (L, S, V): final per-token losses of S
    seeds; ``measured_curve`` (n_eval, L, S, V) logged at the same steps (as ``sweep``'s
    ``curve_loss_per_token``) for the measured learning speed.
    """
    C = as_count_matrix(counts, "counts")
    lams = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    if optimizer == "adamw" and batch_size is None:
        raise ValueError("batch_size is required for optimizer='adamw' (the equilibrium depends on it), got None")
    traj = bigram_trajectory(C, lams, steps=steps, lr=lr, optimizer=optimizer, r=r, batch_size=batch_size,
                             betas=betas, eps=eps, eval_every=eval_every)
    pi = traj.token_probs
    curve = np.moveaxis(traj.loss_per_token, 1, 0)  # (n_eval, L, V)
    parts = dict(bayes=np.tile(bayes_loss_per_token(C), (lams.size, 1)),
                 equilibrium=_equilibrium(C, lams, optimizer=optimizer, r=r, batch_size=batch_size, eps=eps),
                 predicted=curve[-1])
    parts["transient"] = parts["predicted"] - parts["equilibrium"]
    parts["decay"] = parts["equilibrium"] - parts["bayes"]
    mean = sem = speed_meas = None
    if measured is not None:
        measured = np.asarray(measured, dtype=np.float64)
        if measured.ndim != 3 or measured.shape[0] != lams.size or measured.shape[2] != pi.size:
            raise ValueError(f"measured must have shape (n_lam={lams.size}, n_seed, V={pi.size}), "
                             f"got {measured.shape}")
        mean, sem = _sem(measured)
    if measured_curve is not None:
        mc = np.asarray(measured_curve, dtype=np.float64)
        if mc.shape[0] != traj.steps.size or mc.shape[1] != lams.size:
            raise ValueError(f"measured_curve must have shape (n_eval={traj.steps.size}, n_lam={lams.size}, "
                             f"n_seed, V), got {mc.shape}")
        speed_meas = learning_speed(traj.steps, mc.mean(2))  # (L, V)
    ids, _ = bucket_loss(parts["predicted"], pi, scheme=scheme, n_groups=n_groups)

    def bucket(x):
        return None if x is None else bucket_loss(x, pi, scheme=scheme, n_groups=n_groups)[1]

    bucket_sem = None
    if measured is not None and measured.shape[1] > 1:
        bucket_sem = _sem(bucket(measured))[1]  # (L, S, n_b) → (L, n_b)
    bucket_speed_meas = None
    if measured_curve is not None:
        bucket_speed_meas = learning_speed(traj.steps, bucket(np.asarray(measured_curve).mean(2)))
    return LossSplit(
        lam=lams, optimizer=optimizer, steps=int(traj.steps[-1]), token_probs=pi, **parts,
        measured=mean, measured_sem=sem, learning_speed=learning_speed(traj.steps, curve),
        measured_learning_speed=speed_meas, bucket_ids=ids,
        **{f"bucket_{k}": bucket(v) for k, v in parts.items()}, bucket_measured=bucket(mean),
        bucket_measured_sem=bucket_sem, bucket_learning_speed=learning_speed(traj.steps, bucket(curve)),
        bucket_measured_learning_speed=bucket_speed_meas)


def sweep_loss_split(result, task, *, eps=1e-8, betas=(0.9, 0.999), scheme="log3", n_groups=10) -> LossSplit:
    """:func:`loss_split` of a finished bigram sweep (``imbalance.sim.sweep`` result on a
    ``BigramTask``, read by attribute: ``lams``, ``optimizer``, ``lr``, ``batch_size``,
    ``curve_steps``, ``loss_per_token``, ``curve_loss_per_token``; ``task.counts``, ``task.r``).
    ``eps`` and ``betas`` must be those the sweep ran with; the sweep must be a plain one (no
    ``decay_scale``, no ``reweight``: the predicted flows do not model them)."""
    steps = np.asarray(result.curve_steps)
    every = int(steps[1] - steps[0]) if steps.size > 1 else int(steps[-1])
    return loss_split(task.counts, result.lams, steps=int(steps[-1]), lr=result.lr, optimizer=result.optimizer,
                      r=task.r, batch_size=result.batch_size, eps=eps, betas=betas, eval_every=every,
                      measured=result.loss_per_token, measured_curve=result.curve_loss_per_token, scheme=scheme,
                      n_groups=n_groups)
