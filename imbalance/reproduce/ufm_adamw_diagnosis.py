"""Why a UFM AdamW run can miss the T10 prediction: equilibrium, stability and learning-rate checks.

Three cheap experiments on one (λ, B), each a seed mean over per-frequency-bucket losses
(:func:`imbalance.metrics.bucket_loss`):

* ``from_init``: batched AdamW from the seed initialisation; the bucket loss of the final iterate at
  several points of the last half (is the run still moving?) and of the iterate average, max|F| at the
  averaged parameters, and the T10 root polished from the averaged parameters (the equilibrium the
  run sits next to, against the one the mean-field flow selects from the initialisation);
* ``from_prediction``: AdamW started AT the predicted equilibrium, at several learning rates; the
  iterate-averaged bucket loss minus the prediction is the drift the stochastic recursion adds. A drift
  ∝ lr is a discrete-step bias (it vanishes as lr → 0); a drift independent of lr is not.

``python -m imbalance.reproduce.ufm_adamw_diagnosis`` prints the Markdown tables.
"""

from __future__ import annotations

import numpy as np

from .. import metrics
from ..sim import BigramTask, FactoredBigram, sweep
from ..theory.adamw_shared import bigram_law, factored_bigram_adamw_equilibrium, stationarity, ufm_counts
from ..zipf import zipf_pmf
from .adamw_shared import _StartAt, run_stationarity, seed_init

__all__ = ["ufm_task", "from_init", "from_prediction", "flow_stability", "diagnosis_markdown"]


def ufm_task(classes=16, exponent=1.1):
    """The one-feature-per-class UFM of Zipf(``exponent``) classes as a factored bigram task."""
    return BigramTask(ufm_counts(zipf_pmf(classes, exponent)))


def _buckets(loss, pi):
    return metrics.bucket_loss(loss, pi)[1]  # (..., n_b)


def _predict(task, lam, B, init):
    return factored_bigram_adamw_equilibrium(task.counts, lam, init=init, batch_size=B, r=task.r)


def from_init(task, lam, *, batch_size, lr, steps, width=8, seeds=(0, 1, 2), n_eval=8):
    """Training from the seed inits. Returns a dict of seed-mean bucket losses: ``curve_steps`` (n_eval,),
    ``curve`` (n_eval, n_b, final iterate), ``avg`` (n_b, iterate average over the last quarter),
    ``predicted`` (n_b, T10 from the inits; ``predicted_seeds`` (S, n_b) per seed), ``polished`` (n_b,
    T10 root polished from the runs' averaged parameters), and the worst max|F|: ``run_residual``
    (averaged parameters), ``polished_residual``, ``predicted_residual``, and per seed the smallest Re
    eigenvalue of ∂F/∂θ (:func:`flow_stability`) at both roots: ``predicted_stability``,
    ``polished_stability``."""
    model = FactoredBigram(width=width, init_scale=0.1)
    res = sweep(task, [lam], model=model, optimizer="adamw", steps=steps, batch_size=batch_size, lr=lr,
                seeds=tuple(seeds), average_last=steps // 4, progress=False, eval_every=steps // n_eval)
    pi = task.token_probs
    pred = [_predict(task, lam, batch_size, seed_init(model, task, s)) for s in seeds]
    W, E = res.params_avg["W"][0], res.params_avg["E"][0]  # (S, V, d), (S, C, d)
    pol = [_predict(task, lam, batch_size, (np.asarray(W[i], float), np.asarray(E[i], float)))
           for i in range(len(seeds))]
    return dict(curve_steps=res.curve_steps, curve=_buckets(res.curve_loss_per_token[:, 0], pi).mean(1),
                avg=_buckets(res.loss_per_token_avg[0], pi).mean(0),
                predicted=_buckets(np.stack([e.loss_per_token for e in pred]), pi).mean(0),
                polished=_buckets(np.stack([e.loss_per_token for e in pol]), pi).mean(0),
                run_residual=float(run_stationarity(res, task, batch_size).max()),
                polished_residual=float(max(np.max(e.residual) for e in pol)),
                predicted_residual=float(max(np.max(e.residual) for e in pred)),
                predicted_stability=[flow_stability(task, lam, e.W, e.E.T, batch_size=batch_size) for e in pred],
                polished_stability=[flow_stability(task, lam, e.W, e.E.T, batch_size=batch_size) for e in pol],
                predicted_seeds=_buckets(np.stack([e.loss_per_token for e in pred]), pi))


def from_prediction(task, lam, *, batch_size, lrs, steps, width=8, seeds=(0, 1, 2)):
    """AdamW started at the T10 equilibrium (one per seed's init), for each lr in ``lrs``. Returns
    (predicted (n_b,), {lr: iterate-averaged bucket loss over the last half (n_b,)}), seed means."""
    model = FactoredBigram(width=width, init_scale=0.1)
    eqs = [_predict(task, lam, batch_size, seed_init(model, task, s)) for s in seeds]
    start = _StartAt(np.stack([e.W for e in eqs]), np.stack([e.E.T for e in eqs]))  # (S, V, d), (S, C, d)
    pi = task.token_probs
    out = {}
    for lr in lrs:
        res = sweep(task, [lam], model=start, optimizer="adamw", steps=steps, batch_size=batch_size, lr=lr,
                    seeds=tuple(seeds), average_last=steps // 2, progress=False, eval_every=steps)
        out[lr] = _buckets(res.loss_per_token_avg[0], pi).mean(0)
    return _buckets(np.stack([e.loss_per_token for e in eqs]), pi).mean(0), out


def flow_stability(task, lam, W, E, *, batch_size, eps=1e-8, step=1e-6):
    """Smallest real part of the eigenvalues of ∂F/∂θ at (W (V, d), E (C, d)) (central differences of
    :func:`~imbalance.theory.adamw_shared.stationarity`, dense: small systems only). Positive: the point
    is a linearly stable fixed point of the mean-field flow θ̇ = −F(θ)."""
    law, (V, d) = bigram_law(task.counts), W.shape

    def F(theta):
        fW, fE = stationarity(theta[:V * d].reshape(V, d), theta[V * d:].reshape(-1, d), law, lam,
                              batch_size=batch_size, eps=eps, r=task.r)
        return np.concatenate([fW.ravel(), fE.ravel()])

    theta = np.concatenate([W.ravel(), E.ravel()])
    J = np.empty((theta.size, theta.size))
    for k in range(theta.size):
        e = np.zeros(theta.size)
        e[k] = step
        J[:, k] = (F(theta + e) - F(theta - e)) / (2 * step)
    return float(np.linalg.eigvals(J).real.min())


def _slow_rows(task, lam, batch_size, seeds, slow, fmt):
    if slow is None:
        return []
    b = from_init(task, lam, batch_size=batch_size, lr=slow[0], steps=slow[1], seeds=seeds)
    return [_row([f"lr {slow[0]:g}, {slow[1]:,} steps: iterate average (max abs F {b['run_residual']:.2g})",
                  *fmt(b["avg"])]),
            _row([f"lr {slow[0]:g}: T10 polished from those runs (max abs F {b['polished_residual']:.0e})",
                  *fmt(b["polished"])])]


def _row(cells):
    return "| " + " | ".join(cells) + " |"


def diagnosis_markdown(task, lam, *, batch_size, lr, steps, restart_steps, lrs, seeds=(0, 1, 2), slow=None):
    """Both experiments as two Markdown tables (bucket losses in nats, seed means); ``slow`` = (lr, steps):
    a second training from the inits at that lr, its iterate average and the root polished from it."""
    a = from_init(task, lam, batch_size=batch_size, lr=lr, steps=steps, seeds=seeds)
    n_b = a["avg"].size
    head = ["", *[f"bucket {b}" for b in range(n_b)]]
    sep = "|" + "---|" * len(head)
    fmt = lambda v: [f"{x:.4f}" for x in v]  # noqa: E731
    lines = [_row(head), sep]
    lines += [_row([f"final iterate, step {int(s)}", *fmt(c)]) for s, c in zip(a["curve_steps"], a["curve"])
              if s >= steps // 2]
    lines += [_row(["iterate average (last quarter)", *fmt(a["avg"])]),
              _row([f"T10 from the init (max abs F {a['predicted_residual']:.0e})", *fmt(a["predicted"])]),
              _row([f"T10 polished from the runs (max abs F {a['polished_residual']:.0e})", *fmt(a["polished"])]),
              *_slow_rows(task, lam, batch_size, seeds, slow, fmt),
              "", f"max abs F at the runs' averaged parameters: {a['run_residual']:.2g}. T10 per seed: "
              + "; ".join(", ".join(fmt(v)) for v in a["predicted_seeds"]) + ". Smallest Re eigenvalue of ∂F/∂θ "
              f"(seeds): at T10 {', '.join(f'{x:.3f}' for x in a['predicted_stability'])}, at the polished "
              f"roots {', '.join(f'{x:.3f}' for x in a['polished_stability'])} (λ = {lam:g}).", ""]
    pred, drift = from_prediction(task, lam, batch_size=batch_size, lrs=lrs, steps=restart_steps, seeds=seeds)
    lines += [_row(["started at T10, lr", *head[1:]]), sep, _row(["(T10)", *fmt(pred)])]
    lines += [_row([f"{g:g}", *[f"{x:.4f} ({100 * (x / p - 1):+.1f} %)" for x, p in zip(drift[g], pred)]])
              for g in lrs]
    return "\n".join(lines)


if __name__ == "__main__":  # the λ = 2, B = 64 cell of the T10 UFM table
    print(diagnosis_markdown(ufm_task(), 2.0, batch_size=64, lr=2.5e-3, steps=80_000, restart_steps=40_000,
                             lrs=(5e-3, 2.5e-3, 1.25e-3, 6.25e-4, 3.125e-4), slow=(6.25e-4, 320_000)))
