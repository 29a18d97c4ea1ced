"""Kunstner & Bach's vocabulary scaling with the cross-entropy loss, in their own setting.

Kunstner & Bach (2025, arXiv 2505.19227, Fig. 8): the linear bigram of ``scaling`` with the
squared loss replaced by cross-entropy, L(W) = Σ_i π_i CE(q(·|i), softmax(w_i)), Zipf(1) marginals
π and conditionals (every row's conditional a permutation of the same Zipf law), from W = 0,
relative error r(t) = (L(t) − L*)/(L(0) − L*), L(0) = log d, L* = H(q) (softmax(log q) = q, so the
optimum is attained), the step chosen per budget by grid search (the envelope over constant steps).

* Sign descent: sign(π_i (p_i − q)) = sign(p_i − q) does not depend on π_i, so every row follows
  the same path up to its permutation and r(t) is one row's: O(d) per step. Decoupled decay λ
  (w ← (1 − ηλ)w − η sign(∇)) leaves the Filippov equilibrium at p = q while the centred log q fits
  in the box |w| ≤ 1/λ, so the reference stays H(q).
* Gradient descent: row i moves with step ηπ_i, so the rows differ; the d × d iteration is run
  literally (O(d²) per step), with coupled L2 λ measured from the minimiser of the decayed objective
  (T2, ``bigram_equilibrium``), its cross-entropy part as the reference.
"""

from __future__ import annotations

import numpy as np

from ..theory import bigram_equilibrium
from ..zipf import zipf_pmf

__all__ = ["ce_sign_envelope", "ce_gd_errors", "ce_first_below", "ce_scaling_rows", "ce_scaling_table"]


def _softmax(w):
    z = np.exp(w - w.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _ce(q, w):
    """Σ_j q_j (−log softmax(w)_j) over the last axis."""
    m = w.max(-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(w - m).sum(-1))
    return lse - (w * q).sum(-1)


def ce_sign_envelope(d: int, steps: int, *, lam: float = 0.0, etas=None, alpha: float = 1.0) -> np.ndarray:
    """(steps + 1,) best relative error over the constant steps ``etas`` (default: 4 per octave over
    [1e-4, 1]) after t = 0 … steps steps of sign descent on one row (all rows alike)."""
    q = zipf_pmf(d, alpha)
    etas = np.logspace(-4, 0, 54) if etas is None else np.asarray(etas, dtype=np.float64)
    h = float(-(q * np.log(q)).sum())
    w = np.zeros((etas.size, d))  # (n_eta, d)
    out = np.empty(steps + 1)
    out[0] = 1.0
    for t in range(1, steps + 1):
        w = (1.0 - etas[:, None] * lam) * w - etas[:, None] * np.sign(_softmax(w) - q)  # (n_eta, d)
        out[t] = (_ce(q, w).min() - h) / (np.log(d) - h)
    return out


def ce_gd_errors(d: int, steps: int, *, lam: float = 0.0, lr: float | None = None, alpha: float = 1.0) -> np.ndarray:
    """(steps + 1,) relative error of literal gradient descent (step ``lr``, default 1/π_1; coupled
    L2 λ) on the d × d cross-entropy bigram, measured from the decayed objective's minimiser."""
    pi, q = zipf_pmf(d, alpha), zipf_pmf(d, alpha)
    lr = 1.0 / pi[0] if lr is None else float(lr)
    f_star = float(-(q * np.log(q)).sum()) if lam == 0 else float(
        bigram_equilibrium(pi[:, None] * q[None, :], lam).aggregate_loss)
    f0 = np.log(d)
    w = np.zeros((d, d))  # (contexts, tokens); rows share q up to a permutation, which changes nothing
    out = np.empty(steps + 1)
    out[0] = 1.0
    for t in range(1, steps + 1):
        w -= lr * (pi[:, None] * (_softmax(w) - q) + lam * w)  # (d, d)
        out[t] = ((pi * _ce(q, w)).sum() - f_star) / (f0 - f_star)
    return out


def ce_first_below(errors, eps: float) -> int:
    """First t with errors[t] ≤ eps, −1 if none."""
    hit = np.flatnonzero(np.asarray(errors) <= eps)
    return int(hit[0]) if hit.size else -1


def ce_scaling_rows(ds_sign=(100, 1000, 10_000), ds_gd=(30, 100, 300), *, eps_values=(0.1, 0.01),
                    lams_sign=(0.0, 0.1), lams_gd=(0.0, 1e-4), sign_steps: int = 300,
                    gd_steps_per_d: int = 20) -> list[dict]:
    """Iterations to relative error ε per d, method and λ (decoupled for sign descent, coupled L2 for
    gradient descent at step 1/π_1), −1 where the budget (``sign_steps``; ``gd_steps_per_d``·d) did
    not reach it."""
    rows = []
    for lam in lams_sign:
        for d in ds_sign:
            env = ce_sign_envelope(d, sign_steps, lam=lam)
            rows += [dict(method="sign", lam=lam, d=d, eps=e, t=ce_first_below(env, e)) for e in eps_values]
    for lam in lams_gd:
        for d in ds_gd:
            err = ce_gd_errors(d, gd_steps_per_d * d, lam=lam)
            rows += [dict(method="gd", lam=lam, d=d, eps=e, t=ce_first_below(err, e)) for e in eps_values]
    return rows


def ce_scaling_table(**kw) -> list[dict]:
    """Print ``ce_scaling_rows`` with the fitted exponent of t against d (``scaling.fit_exponent``)."""
    from .scaling import fit_exponent

    print("Cross-entropy linear bigram (Kunstner & Bach 2025, Fig. 8 setting), alpha = 1: iterations to "
          "relative error eps; sign: best constant step per budget, decoupled decay; gd: step 1/pi_1, coupled L2")
    rows = ce_scaling_rows(**kw)
    for key in sorted({(r["method"], r["lam"], r["eps"]) for r in rows}):
        sub = [r for r in rows if (r["method"], r["lam"], r["eps"]) == key]
        pts = [(r["d"], r["t"]) for r in sub if r["t"] > 0]
        fit = fit_exponent(*zip(*pts)) if len(pts) > 2 else (np.nan,) * 3
        print(f"  {key[0]:>4} lam {key[1]:<7g} eps {key[2]:<5g} " + " ".join(f"d={r['d']}: {r['t']}" for r in sub)
              + f"  exponent {fit[0]:.2f} [{fit[1]:.2f}, {fit[2]:.2f}]")
    return rows
