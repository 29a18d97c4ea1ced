"""Optimisation scaling with vocabulary size: gradient descent vs sign descent (Adam's proxy).

Run ``python -m imbalance.reproduce.scaling`` (tens of minutes on a laptop CPU; ``main`` takes
smaller sizes).

1. Kunstner & Bach (2025, arXiv 2505.19227), their setting: the linear bigram with squared
   loss, F(W) = ½ Σ_i π_i ‖W_i − q(·|i)‖², Zipf(α) marginals π_i ∝ i^{−α} and conditionals
   that are the same Zipf(α) law up to a permutation of the tokens, started at W = 0. The
   Hessian is diagonal (π_i per row), so both methods are computed exactly in O(d) per
   iterate count: gradient descent (step 1/π_1, the largest that keeps every coordinate
   monotone) has relative error r(t) = Σ_i π_i (1 − π_i/π_1)^{2t}; sign descent moves every
   coordinate by ±η, independently of π_i, so its error is one row's, and we give it the
   best constant step for each budget t (Kunstner & Bach's grid, ``sign_step_grid``). We report
   the smallest t with r(t) ≤ ε against d, and its fitted exponent in d (``fit_exponent``).
   Their √d law for sign descent holds for their averaged dynamics (Assumption 4.1) with their
   step protocol (η = 1/(z t φ), φ tuned per budget); the exact iterate is also printed, at even
   and at odd budgets separately (its error alternates between the two). With weight decay:
   coupled L2 for gradient descent, decoupled decay for sign descent.
2. The same question with cross-entropy and with weight decay, on the deterministic bigram
   (context k → token k, Zipf(α) contexts), where ``bigram_trajectory`` integrates gradient
   descent and sign descent (mean-field Adam with β = (0, 0), ε = 0, exact gradient) in
   O(d) per step; with decay the error is measured from the matching equilibrium (T2 for
   gradient descent with L2, T3 with B = ∞ for sign descent with decoupled decay); 2b. in Kunstner &
   Bach's own cross-entropy setting (``scaling_ce``).
3. Time for each token to reach half its initial loss, against its frequency, under SGD
   and under (mean-field) Adam with minibatch B, and the log-log slope.
"""

from __future__ import annotations

import time

import numpy as np

from ..theory import bigram_equilibrium
from ..theory.dynamics import bigram_trajectory
from ..zipf import zipf_pmf

__all__ = ["squared_loss_gd_error", "squared_loss_sign_error", "sign_step_grid", "sign_iterations_closed_form",
           "iterations_to_error", "fit_exponent", "squared_loss_l2_bias", "squared_loss_scaling_rows",
           "squared_loss_scaling_table",
           "ce_iterations_to_error",
           "half_loss_steps", "mean_field_errors", "sgd_noise_excess_measurement", "main"]


def squared_loss_gd_error(d: int, t, alpha: float = 1.0, lam: float = 0.0) -> np.ndarray:
    """Relative error of gradient descent after t steps on K&B's squared-loss bigram, with coupled L2
    λ ≥ 0: F_λ = F + (λ/2)‖W‖², curvature a_i = π_i + λ per row, step 1/a_1, measured from F_λ's own
    minimiser w*_ij = π_i q_j/a_i: r(t) = Σ_i a_i (π_i/a_i)² (1 − a_i/a_1)^{2t} / Σ_i a_i (π_i/a_i)²."""
    pi = zipf_pmf(d, alpha)
    a = pi + lam
    w = a * (pi / a) ** 2  # Σ_j q_j² cancels
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    return np.array([(w * (1.0 - a / a[0]) ** (2 * s)).sum() / w.sum() for s in t])


def _sign_error(delta, t, eta):
    """Σ_k e_k(t)² / Σ_k δ_k² for sign descent with step η from 0 towards δ_k > 0: the coordinate
    moves by η until it passes δ_k (after n = ⌈δ_k/η⌉ steps), then alternates between two values."""
    n = np.ceil(delta / eta)
    before = delta - t * eta
    after_even = delta - n * eta  # in (−η, 0]
    after = np.where((t - n) % 2 == 0, after_even, after_even + eta)
    e = np.where(t < n, before, after)
    return (e * e).sum() / (delta * delta).sum()


def _sign_error_averaged(delta, t, etas, lam: float = 0.0):
    """Kunstner & Bach's Assumption 4.1 (their Prop. 4.2): a coordinate with δ_k > x_t is at δ_k − x_t,
    every other one oscillates at |e| = η/2; x_t = tη, or with decoupled decay λ (w ← (1 − ηλ)w − η sign)
    x_t = (1 − (1 − ηλ)^t)/λ, the same for every coordinate still rising. O(log d) per step from prefix
    sums (δ sorted, decreasing)."""
    etas = np.asarray(etas, dtype=np.float64)
    x = t * etas if lam == 0 else -np.expm1(t * np.log1p(-etas * lam)) / lam  # (n_eta,) reach
    s1, s2 = np.cumsum(np.r_[0.0, delta]), np.cumsum(np.r_[0.0, delta * delta])  # (d + 1,) prefix sums
    k = np.searchsorted(-delta, -x, side="left")  # (n_eta,) #{δ_k > x_t}
    head = s2[k] - 2 * x * s1[k] + k * x**2  # Σ_{k' ≤ k} (δ_k' − x_t)²
    return (head + (delta.size - k) * etas**2 / 4) / s2[-1]


def sign_step_grid(d: int, t: int, alpha: float = 1.0, per_octave: int = 32) -> np.ndarray:
    """Kunstner & Bach's step-size protocol for a budget of t steps: η = 1/(z t φ^α), z = Σ_k k^{−α}
    (so that tη = δ_φ(0): the first φ coordinates are still decreasing at t), φ on a log grid over
    [1, d] (their Prop. 4.3 bracket for the best η), ``per_octave`` points per factor 2."""
    z = 1.0 / zipf_pmf(d, alpha)[0]
    phi = 2.0 ** np.linspace(0.0, np.log2(d), int(np.ceil(np.log2(d) * per_octave)) + 1)
    return 1.0 / (z * max(t, 1) * phi**alpha)


def squared_loss_sign_error(d: int, t: int, alpha: float = 1.0, eta: float | None = None,
                            dynamics: str = "exact", lam: float = 0.0) -> tuple[float, float]:
    """(best relative error over the step grid of ``sign_step_grid``, that η) of sign descent after t
    steps from W = 0; with ``eta`` given, the error at that step. ``dynamics``: "exact" (the iterate,
    oscillations included) or "averaged" (Kunstner & Bach's Assumption 4.1, the model their √d law
    is proved for; ``lam`` > 0 adds decoupled decay, averaged dynamics only: the iterate still ends
    oscillating about W* = q, the Filippov equilibrium while λ max q < 1, so F* = 0 stays the reference)."""
    delta = zipf_pmf(d, alpha)  # one row's conditional, sorted; the error does not depend on π_i
    if dynamics not in ("exact", "averaged"):
        raise ValueError(f"dynamics must be 'exact' or 'averaged', got dynamics={dynamics!r}")
    etas = np.atleast_1d(np.float64(eta)) if eta is not None else sign_step_grid(d, t, alpha)
    if lam and (dynamics != "averaged" or lam * delta[0] >= 1):
        raise ValueError(f"lam > 0 needs dynamics='averaged' and lam·max q < 1, got lam={lam!r}, dynamics={dynamics!r}")
    if dynamics == "averaged":
        errs = _sign_error_averaged(delta, t, etas, lam)
    else:
        errs = np.array([_sign_error(delta, t, e) for e in etas])
    i = int(errs.argmin())
    return float(errs[i]), float(etas[i])


def sign_iterations_closed_form(d: int, eps: float) -> float:
    """Budget t at which the averaged sign descent (Assumption 4.1, α = 1) with its best step reaches
    relative error ε, when that step keeps every coordinate oscillating (tη ≥ δ_2(0), φ ≤ 2):
    with u = 1/φ ∈ [½, 1] the error is [(1 − u)² + (d − 1)u²/(4t²)]/H_{d,2}, minimal at
    u = 1/(1 + a), a = (d − 1)/(4t²), where it equals a/((1 + a) H_{d,2}); so
    t = ½ √((d − 1)(1/(ε H_{d,2}) − 1)) ~ √d, valid when ε H_{d,2} ≤ ½ (u ≥ ½)."""
    h2 = float((zipf_pmf(d, 1.0) ** 2).sum() / zipf_pmf(d, 1.0)[0] ** 2)  # H_{d,2} = Σ k⁻²
    if not 0 < eps * h2 <= 0.5:
        raise ValueError(f"eps must satisfy 0 < eps·H_(d,2) <= 1/2, got eps={eps!r} (H = {h2:.4f})")
    return 0.5 * float(np.sqrt((d - 1) * (1.0 / (eps * h2) - 1.0)))


_METHODS = {"gd": (1, 0), "sign": (1, 0), "sign_even": (2, 0), "sign_odd": (2, 1)}


def iterations_to_error(d: int, method: str, eps: float = 0.1, alpha: float = 1.0, t_max: int = 10**8,
                        lam: float = 0.0) -> int:
    """Smallest budget t with relative error ≤ eps (doubling, then bisection on t), −1 past ``t_max``.
    ``method``: "gd" (step 1/π_1); "sign" (averaged dynamics, Assumption 4.1, best step per budget:
    Kunstner & Bach's protocol); "sign_even" / "sign_odd" (the exact iterate, best step per budget,
    budgets of one parity: the exact error alternates between even and odd t, so t of both parities
    do not form one monotone sequence). ``lam``: coupled L2 for "gd", decoupled decay for "sign"."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got method={method!r}")
    stride, offset = _METHODS[method]
    dynamics = "averaged" if method == "sign" else "exact"

    def err(m):
        t = stride * m + offset
        if method == "gd":
            return squared_loss_gd_error(d, t, alpha, lam)[0]
        return squared_loss_sign_error(d, t, alpha, dynamics=dynamics, lam=lam)[0]

    lo, hi = 0, 1
    while err(hi) > eps:
        lo, hi = hi, hi * 2
        if stride * hi + offset > t_max:
            return -1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if err(mid) <= eps else (mid, hi)
    return stride * hi + offset


def fit_exponent(d, t, level: float = 0.95) -> tuple[float, float, float]:
    """(slope, lower, upper) of the least-squares line through (log d, log t), with a Student-t
    interval from the residuals. The measurements are deterministic: the interval measures how far
    the points are from one power law over the range (finite-d curvature), not sampling noise."""
    from scipy import stats

    d, t = np.asarray(d, dtype=np.float64), np.asarray(t, dtype=np.float64)
    keep = t > 0
    x, y = np.log(d[keep]), np.log(t[keep])
    if x.size < 3:
        raise ValueError(f"fit_exponent needs at least 3 points with t > 0, got {x.size}")
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
    resid = y - y.mean() - slope * xc
    se = np.sqrt((resid * resid).sum() / (x.size - 2) / (xc * xc).sum())
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 2) * se)
    return slope, slope - half, slope + half


def ce_iterations_to_error(d: int, method: str, *, lam: float = 0.0, eps: float = 0.1, alpha: float = 1.0,
                           lr: float | None = None, max_steps: int = 200_000) -> int:
    """Steps for the deterministic cross-entropy bigram to reach relative error ≤ eps, measured from
    the equilibrium of its own optimiser at this λ (λ = 0: F* = 0). ``method``: "gd" (default step
    1/π_1) or "sign" (default step 0.05). −1 if not reached within ``max_steps``."""
    pi = zipf_pmf(d, alpha)
    counts = np.diag(pi)
    if method == "gd":
        lr = lr or 1.0 / pi[0]
        kw = dict(optimizer="sgd")
        f_star = 0.0 if lam == 0 else float(bigram_equilibrium(counts, lam).aggregate_loss)
    else:
        lr = lr or 0.05
        kw = dict(optimizer="adamw", betas=(0.0, 0.0), eps=0.0)
        f_star = 0.0 if lam == 0 else float(bigram_equilibrium(counts, lam, optimizer="adamw", batch_size=10**9,
                                                                 eps=0.0).aggregate_loss)
    steps, f0 = 500, np.log(d)
    while steps <= 2 * max_steps:  # double the horizon; the answer is resolved to 1/500 of it
        traj = bigram_trajectory(counts, lam, steps=steps, lr=lr, eval_every=max(1, steps // 500), **kw)
        rel = (traj.aggregate_loss - f_star) / (f0 - f_star)
        hit = np.flatnonzero(rel <= eps)
        if hit.size:
            return int(traj.steps[hit[0]])
        steps *= 2
    return -1


def half_loss_steps(K: int = 256, s: float = 1.0, *, optimizer: str, lr: float, batch_size: int = 64,
                    steps: int = 20000, lam: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(π, first logged step at which ℓ_v ≤ ℓ_v(0)/2, NaN if never) on the deterministic Zipf bigram,
    for SGD (drift) or mean-field AdamW with minibatch ``batch_size``."""
    pi = zipf_pmf(K, s)
    traj = bigram_trajectory(np.diag(pi), lam, steps=steps, lr=lr, optimizer=optimizer, batch_size=batch_size,
                             eval_every=max(1, steps // 2000))
    ok = traj.loss_per_token <= traj.loss_per_token[0] / 2  # (n_eval, K)
    first = np.where(ok.any(0), traj.steps[np.argmax(ok, 0)], np.nan)
    return pi, first


def mean_field_errors(settings=None, seeds: int = 8, K: int = 16) -> list[dict]:
    """Largest relative gap, per log3 bucket after the second logged step, between batched simulations
    (seed mean) and the predicted curve; one row per (task, optimizer, B, lr, steps[, K]), λ ∈ {0.01, 0.1}.
    The default settings are those the proof file quotes (where the small-lr/mean-field flow holds and
    where it does not)."""
    from ..metrics import bucket_loss
    from ..sim import (  # simulation only here: the rest is torch-free
        BigramTable,
        BigramTask,
        sweep,
    )

    def make(name, k):
        if name == "stochastic":
            return BigramTask.stochastic_zipf(k, 1.0, 0.7)
        return BigramTask.deterministic_zipf(k, 1.0)

    settings = settings or [("stochastic", "sgd", 64, 0.5, 2000), ("stochastic", "adamw", 64, 1e-3, 3000),
                            ("stochastic", "adamw", 64, 3e-3, 1000), ("stochastic", "adamw", 64, 1e-2, 300),
                            ("stochastic", "adamw", 8, 3e-3, 2000), ("deterministic", "adamw", 64, 3e-2, 2000),
                            ("deterministic", "sgd", 64, 0.5, 2000), ("deterministic", "adamw", 64, 3e-3, 2000),
                            ("stochastic", "adamw", 64, 3e-3, 3000, 32), ("stochastic", "adamw", 64, 1e-3, 3000, 32)]
    rows = []
    for name, opt, B, lr, steps, *k in settings:
        task, every = make(name, k[0] if k else K), max(1, steps // 20)
        res = sweep(task, [0.01, 0.1], model=BigramTable(), optimizer=opt, steps=steps, batch_size=B, lr=lr,
                    seeds=tuple(range(seeds)), eval_every=every)
        traj = bigram_trajectory(task.counts, [0.01, 0.1], steps=steps, lr=lr, optimizer=opt, r=task.r,
                                 batch_size=B, eval_every=every)
        _, sim = bucket_loss(res.curve_loss_per_token, task.token_probs)  # (n_eval, L, S, n_b)
        _, pred = bucket_loss(np.moveaxis(traj.loss_per_token, 0, 1), task.token_probs)  # (n_eval, L, n_b)
        mean, se = sim.mean(2), sim.std(2, ddof=1) / np.sqrt(seeds)
        rel = np.abs(mean - pred)[2:] / pred[2:]
        rows.append(dict(task=name, K=task.vocab_size, optimizer=opt, batch_size=B, lr=lr, steps=steps,
                         max_rel_error=float(rel.max()),
                         max_z=float((np.abs(mean - pred)[2:] / se[2:]).max())))
    return rows


def sgd_noise_excess_measurement(settings=((8, 1.0), (8, 2.0), (32, 2.0)), lam: float = 0.03, steps: int = 4000,
                                 seeds: int = 8, K: int = 16) -> list[dict]:
    """Minibatch SGD's aggregate loss over the late half of a run minus the predicted mean path's, with
    the standard error over seeds, beside ``sgd_noise_excess_estimate`` (stochastic Zipf task)."""
    from ..sim import BigramTable, BigramTask, sweep
    from ..theory.dynamics import sgd_noise_excess_estimate

    task = BigramTask.stochastic_zipf(K, 1.0, 0.7)
    pi = task.token_probs
    rows = []
    for B, lr in settings:
        res = sweep(task, [lam], model=BigramTable(), optimizer="sgd", steps=steps, batch_size=B, lr=lr,
                    seeds=tuple(range(seeds)), eval_every=steps // 40)
        traj = bigram_trajectory(task.counts, lam, steps=steps, lr=lr, batch_size=B, eval_every=steps // 40)
        late = slice(traj.steps.size // 2, None)
        sim = (res.curve_loss_per_token[late, 0] * pi).sum(-1).mean(0)  # (S,) time-averaged aggregate
        pred = (traj.loss_per_token[late] * pi).sum(-1).mean()
        estimate = (sgd_noise_excess_estimate(traj, B, task.counts)[late] * pi).sum(-1).mean()
        rows.append(dict(batch_size=B, lr=lr, excess=float(sim.mean() - pred),
                         sem=float(sim.std(ddof=1) / np.sqrt(seeds)), estimate=float(estimate)))
    return rows


def squared_loss_l2_bias(d: int, lam: float, alpha: float = 1.0) -> float:
    """F(W*_λ)/F(0): how far the coupled-L2 minimiser w*_ij = π_i q_j/(π_i + λ) is from the undecayed
    solution q, relative: Σ_i π_i (λ/(π_i + λ))² (Σ_j q_j² cancels)."""
    pi = zipf_pmf(d, alpha)
    return float((pi * (lam / (pi + lam)) ** 2).sum())


def squared_loss_scaling_rows(ds, eps_values=(1e-1, 1e-2, 1e-3), max_d_exact: int = 10**4,
                              lam: float = 0.0) -> list[dict]:
    """Iterations to relative error ε on Kunstner & Bach's squared-loss bigram (α = 1) per d and ε:
    gradient descent (step 1/(π_1 + λ), coupled L2 λ, error from its own minimiser; ``l2_bias`` =
    that minimiser's undecayed relative error), sign descent averaged (their Assumption 4.1 and step
    protocol, decoupled decay λ; its λ = 0 closed form beside it) and, at λ = 0, the exact iterate at
    even / odd budgets (d ≤ ``max_d_exact``, else −1)."""
    rows = []
    for eps in eps_values:
        for d in ds:
            exact = d <= max_d_exact and lam == 0
            rows.append(dict(eps=eps, d=d, lam=lam, gd=iterations_to_error(d, "gd", eps=eps, lam=lam),
                             l2_bias=squared_loss_l2_bias(d, lam),
                             sign=iterations_to_error(d, "sign", eps=eps, lam=lam),
                             sign_closed_form=sign_iterations_closed_form(d, eps),
                             sign_even=iterations_to_error(d, "sign_even", eps=eps) if exact else -1,
                             sign_odd=iterations_to_error(d, "sign_odd", eps=eps) if exact else -1))
    return rows


def squared_loss_scaling_table(ds, max_d_exact: int = 10**4, lam: float = 0.0) -> list[dict]:
    """Print ``squared_loss_scaling_rows`` and, per ε and method, the fitted exponent of t against d
    with its 95 % interval (``fit_exponent``); return the rows."""
    print(f"1. Squared-loss linear bigram (Kunstner & Bach 2025), alpha = 1, lam = {lam:g}, iterations to "
          "relative error eps")
    print("   sign = averaged dynamics (their Assumption 4.1), best step eta = 1/(z t phi), phi on a log grid")
    print("   over [1, d]; even/odd = the exact iterate at budgets of one parity, same step protocol")
    rows = squared_loss_scaling_rows(ds, max_d_exact=max_d_exact, lam=lam)
    cols = ("gd", "l2_bias", "sign", "sign_closed_form", "sign_even", "sign_odd")
    print(f"{'eps':>6} {'d':>7} " + " ".join(f"{c:>16}" for c in cols))
    for r in rows:
        print(f"{r['eps']:>6g} {r['d']:>7} " + " ".join(f"{r[c]:>16.6g}" for c in cols))
    for eps in sorted({r["eps"] for r in rows}, reverse=True):
        sub = [r for r in rows if r["eps"] == eps]
        fits = []
        for c in [c for c in cols if c != "l2_bias"]:
            pts = [(r["d"], r[c]) for r in sub if r[c] > 0]
            if len(pts) < 3:
                continue
            d, t = zip(*pts)
            s, lo, hi = fit_exponent(d, t)
            fits.append(f"{c} {s:.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"  exponent of t vs d at eps={eps:g} (95 % interval): " + "; ".join(fits))
    return rows


def _slope(x, y):
    keep = np.isfinite(y) & (y > 0)
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def main(max_d: int = 10**5, max_d_ce: int = 3000, errors: bool = True, max_d_exact: int = 10**4,
         ce_kb: bool = True) -> None:
    ds = [d for d in (10**2, 3 * 10**2, 10**3, 3 * 10**3, 10**4, 3 * 10**4, 10**5) if d <= max_d]
    for lam in (0.0, 1e-4, 1e-3):
        squared_loss_scaling_table(ds, max_d_exact=max_d_exact, lam=lam)
    print("\n2. Cross-entropy, deterministic bigram, alpha = 1, relative error 0.1 (GD step 1/pi_1, sign step 0.05)")
    print(f"{'d':>8} {'lam':>6} {'GD':>8} {'sign':>8} {'seconds':>8}")
    for lam in (0.0, 1e-4):
        res = []
        for d in [d for d in ds if d <= max_d_ce]:
            t0 = time.perf_counter()
            gd, sd = ce_iterations_to_error(d, "gd", lam=lam), ce_iterations_to_error(d, "sign", lam=lam)
            res.append((d, gd, sd))
            print(f"{d:>8} {lam:>6g} {gd:>8} {sd:>8} {time.perf_counter() - t0:>8.1f}")
        d_arr, gd_arr, sd_arr = (np.array(c, dtype=float) for c in zip(*res))
        print(f"  slope vs d at lam={lam:g}: GD {_slope(d_arr, gd_arr):.2f}, sign {_slope(d_arr, sd_arr):.2f}")
    if ce_kb:
        from .scaling_ce import ce_scaling_table

        print("\n2b. ", end="")
        ce_scaling_table()
    print("\n3. Steps to half the initial loss vs frequency (deterministic Zipf(1) bigram, K = 256, B = 64)")
    for opt, lr in (("sgd", 1.0), ("adamw", 1e-2)):
        pi, t_half = half_loss_steps(optimizer=opt, lr=lr)
        reached = np.isfinite(t_half)
        print(f"  {opt:>5} lr {lr:g}: slope of log t_half vs log pi = {_slope(pi, t_half):.2f} "
              f"({reached.sum()}/{pi.size} tokens reached half), t_half range {np.nanmin(t_half):.0f}-"
              f"{np.nanmax(t_half):.0f}")
    if errors:
        print("\n4. Predicted curves vs simulations (8 seeds, lambda in {0.01, 0.1}), per log3 bucket")
        print(f"{'task':>13} {'K':>3} {'opt':>5} {'B':>3} {'lr':>6} {'steps':>5} {'max rel err':>11} {'max |z|':>7}")
        for row in mean_field_errors():
            print(f"{row['task']:>13} {row['K']:>3} {row['optimizer']:>5} {row['batch_size']:>3} {row['lr']:>6g} "
                  f"{row['steps']:>5} "
                  f"{row['max_rel_error']:>11.4f} {row['max_z']:>7.1f}")
        print("\n5. SGD noise: aggregate excess over the mean path (late half) vs sgd_noise_excess_estimate")
        for row in sgd_noise_excess_measurement():
            print(f"  B {row['batch_size']:>3} lr {row['lr']:g}: excess {row['excess']:.5f} ± {row['sem']:.5f}, "
                  f"estimate {row['estimate']:.5f}")


if __name__ == "__main__":
    import sys

    main(max_d=int(sys.argv[1]) if len(sys.argv) > 1 else 10**5)
