"""Predicted learning curves of the factored bigram (T7) under gradient descent / SGD with L2 and AdamW.

Logits z_x = r W e_x (context embedding E (n_ctx × d), unembedding W (V × d)), objective

    F(E, W) = Σ_x P(x) CE(q(·|x), r W e_x) + (λ_E/2)‖E‖² + (λ_W/2)‖W‖²,

trained from a given start (E₀, W₀): the simulation's ``FactoredBigram`` draws it i.i.d.
N(0, init_scale²) per seed, so a prediction is made per start. The recursion
θ ← θ − η ∇F(θ) is full-batch gradient descent with coupled L2 exactly, and the mean path of
minibatch SGD to first order in η (the same drift argument as the one-hot bigram,
``proofs/T11_token_dynamics.md``); its small-lr limit, the gradient flow read at time η·t, is
integrated in far fewer gradients by Runge–Kutta–Chebyshev steps (``integrator="rkc"``). The
objective is not convex: the path, not only the equilibrium, depends on the start. Cost
O(n_ctx · V · d) per gradient (dense). AdamW: ``factored_adamw_trajectory``, the mean-field
recursion on the closed-form minibatch moments of the AdamW shared-representation theory
(``imbalance.theory.adamw_shared``, ``proofs/T10_adamw_shared.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import _short, as_choice, as_count_matrix, as_nonnegative, as_positive, as_positive_int
from .adamw_shared import bigram_law, mean_field_adamw_path
from .chebyshev import rkc_integrate
from .dynamics import eval_steps

__all__ = ["FactoredTrajectory", "factored_adamw_trajectory", "factored_gd_trajectory"]


@dataclass(frozen=True)
class FactoredTrajectory:
    """``loss_per_token`` (n_start, n_eval, V) for each start (seed) along ``steps``; NaN if π_v = 0.

    ``integrator`` "steps" (one update per optimiser step) or "rkc" (the gradient flow in time
    η·t, :mod:`imbalance.theory.chebyshev`); ``gradient_evaluations`` the full gradients computed."""

    lam_E: float
    lam_W: float
    lr: float
    steps: np.ndarray
    token_probs: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: np.ndarray
    integrator: str = "steps"
    gradient_evaluations: int = 0


def _starts(arr, name, rows):
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != rows or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a finite ([n_start,] {rows}, d) array, got shape {np.shape(arr)}")
    return a


class _Objective:
    """F(E, W) = Σ_x P(x) CE(q_x, r W e_x) + (λ_E/2)‖E‖² + (λ_W/2)‖W‖² for S starts at once.

    The dense (n_ctx, V) work runs in ``dtype`` (parameters are cast in, gradients cast out to
    float64; the decay terms are added in float64)."""

    def __init__(self, C, r, lam_E, lam_W, dtype=np.float64):
        coo = C.tocoo()
        total = C.data.sum()
        self.rows, self.cols, self.joint = coo.row, coo.col, coo.data / total  # observed pairs, J(x, v)
        self.J = np.asarray(C.todense()) / total  # (n_ctx, V)
        self.P = self.J.sum(1, keepdims=True)  # (n_ctx, 1)
        self.pi = self.J.sum(0)
        self.r, self.lam_E, self.lam_W = r, lam_E, lam_W
        self.dtype = np.dtype(dtype)
        self.J_c, self.P_c = (a.astype(self.dtype, copy=False) for a in (self.J, self.P))  # J, P in dtype
        # Σ_x J(x, v)·z_xv over the dense logits costs n_ctx·V (≤ the logits' own n_ctx·V·d); a gather
        # of the observed pairs costs more per pair, so it is used only when J is sparse
        self.dense = self.rows.size * 16 >= self.J.size

    def _logits(self, E, W):
        """r·E Wᵀ (S, n_ctx, V) in ``dtype``, and W in ``dtype``."""
        Wc = W.astype(self.dtype, copy=False)
        return (self.r * E).astype(self.dtype, copy=False) @ Wc.transpose(0, 2, 1), Wc

    def gradient(self, E, W):
        """(∂F/∂E (S, n_ctx, d), ∂F/∂W (S, V, d)), float64."""
        Z, Wc = self._logits(E, W)  # (S, n_ctx, V)
        Z -= Z.max(-1, keepdims=True)
        np.exp(Z, out=Z)
        Z *= self.P_c / Z.sum(-1, keepdims=True)  # P(x) p(·|x)
        Z -= self.J_c  # G = ∂/∂z of Σ_x P(x) CE
        gE = (Z @ Wc).astype(np.float64, copy=False)
        gW = (Z.transpose(0, 2, 1) @ E.astype(self.dtype, copy=False)).astype(np.float64, copy=False)
        gE *= self.r
        gE += self.lam_E * E
        gW *= self.r
        gW += self.lam_W * W
        return gE, gW

    def loss_per_token(self, E, W):
        """ℓ_v (S, V) = Σ_x J(x, v)(lse_x − z_xv)/π_v (z the logits); NaN where π_v = 0."""
        Z, _ = self._logits(E, W)  # (S, n_ctx, V)
        if self.dense:  # Σ_x J(x, v) z_xv, accumulated in float64 in blocks of contexts
            zJ = np.zeros((Z.shape[0], self.pi.size))
            for lo in range(0, Z.shape[1], 256):
                zJ += np.einsum("sxv,xv->sv", Z[:, lo:lo + 256], self.J[lo:lo + 256])
        else:
            zJ = np.stack([np.bincount(self.cols, weights=self.joint * row, minlength=self.pi.size)
                           for row in Z[:, self.rows, self.cols].astype(np.float64)])
        m = Z.max(-1, keepdims=True)
        Z -= m
        np.exp(Z, out=Z)
        lse = np.log(Z.sum(-1, dtype=np.float64)) + m[..., 0]  # (S, n_ctx)
        tot = lse @ self.J - zJ  # Σ_x J(x, v)(lse_x − z_xv)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.pi > 0, tot / self.pi, np.nan)


def _run_inputs(counts, E0, W0, lam, lam_W, steps, lr, r):
    """The validated inputs shared by both trajectories: counts (CSR), copies of the starts
    E (S, n_ctx, d) and W (S, V, d), the two decays, steps, lr and r."""
    C = as_count_matrix(counts, "counts")
    n_ctx, V = C.shape
    E = _starts(E0, "E0", n_ctx).copy()
    W = _starts(W0, "W0", V).copy()
    if E.shape[0] != W.shape[0] or E.shape[2] != W.shape[2]:
        raise ValueError(f"E0 and W0 must have the same number of starts and width, got {E.shape} and {W.shape}")
    lam_E = as_nonnegative(lam, "lam")
    lam_W = lam_E if lam_W is None else as_nonnegative(lam_W, "lam_W")
    return C, E, W, lam_E, lam_W, as_positive_int(steps, "steps"), as_positive(lr, "lr"), as_positive(r, "r")


def factored_gd_trajectory(counts, E0, W0, *, lam, steps, lr, r=1.0, lam_W=None, eval_every=None,
                           integrator="steps", rtol=1e-3, dtype=None) -> FactoredTrajectory:
    """Per-token loss along gradient descent with coupled L2 on F from each start (E₀, W₀).

    ``E0`` (n_start, n_ctx, d) or (n_ctx, d), ``W0`` (n_start, V, d) or (V, d); ``lam`` decays E
    (and W unless ``lam_W`` is given). Logged at ``eval_steps(steps, eval_every)``, as the sweep.
    ``integrator="steps"``: the recursion θ ← θ − η∇F(θ), one full gradient per step (exact for
    full-batch gradient descent); ``"rkc"``: the gradient flow θ̇ = −∇F(θ) read at time η·t,
    integrated by adaptive Runge–Kutta–Chebyshev steps with relative tolerance ``rtol`` (the
    small-lr limit of the recursion; far fewer gradients when η is well below the stability limit).
    ``dtype`` ("float32" or "float64"; default float32 for "rkc", float64 for "steps"): the
    precision of the dense (n_ctx, V) work in each gradient and loss (the integrator's state stays
    float64). Float32 halves the cost of a gradient; its rounding (~1e-7 relative) is far below
    the flow's tolerance, but not below the recursion's exactness.
    """
    C, E, W, lam_E, lam_W, steps, lr, r = _run_inputs(counts, E0, W0, lam, lam_W, steps, lr, r)
    integrator = as_choice(integrator, "integrator", {"steps", "rkc"})
    rtol = as_positive(rtol, "rtol")
    dtype = _as_dtype(dtype, np.float32 if integrator == "rkc" else np.float64)
    obj = _Objective(C, r, lam_E, lam_W, dtype)
    log_at = eval_steps(steps, eval_every)
    if integrator == "steps":
        loss, n_grad = _stepped(obj, E, W, lr, log_at)
    else:
        loss, n_grad = _flowed(obj, E, W, lr, log_at, rtol)
    pi = obj.pi
    seen = pi > 0
    agg = (loss[..., seen] * pi[seen]).sum(-1)
    return FactoredTrajectory(lam_E=lam_E, lam_W=lam_W, lr=lr, steps=log_at, token_probs=pi, loss_per_token=loss,
                              aggregate_loss=agg, integrator=integrator, gradient_evaluations=n_grad)


def _as_dtype(dtype, default):
    """None → ``default``; float32 or float64 (a name, type or numpy dtype) → that dtype."""
    if dtype is None:
        return np.dtype(default)
    try:
        dt = np.dtype(dtype.lower() if isinstance(dtype, str) else dtype)
    except Exception:  # noqa: BLE001 — anything numpy cannot read as a dtype is refused by name below
        dt = None
    if dt is not None and dt in (np.float32, np.float64) and not isinstance(dtype, (bool, np.ndarray)):
        return dt
    raise ValueError(f"dtype must be 'float32' or 'float64' (or None), got dtype={_short(dtype)}")


def _stepped(obj, E, W, lr, log_at):
    out = []
    k = 0
    for t in range(int(log_at[-1]) + 1):
        if k < log_at.size and t == log_at[k]:
            out.append(obj.loss_per_token(E, W))
            k += 1
        if t == log_at[-1]:
            break
        gE, gW = obj.gradient(E, W)
        E -= lr * gE
        W -= lr * gW
    return np.stack(out, 1), int(log_at[-1])  # (S, n_eval, V)


def _flowed(obj, E, W, lr, log_at, rtol):
    S, n_ctx, d = E.shape
    nE = E.size

    def split(y):
        return y[:nE].reshape(S, n_ctx, d), y[nE:].reshape(S, -1, d)

    def f(y):
        gE, gW = obj.gradient(*split(y))
        return -np.concatenate([gE.ravel(), gW.ravel()])

    out = []
    y0 = np.concatenate([E.ravel(), W.ravel()])
    atol = 1e-3 * rtol * max(float(np.abs(y0).max()), 1e-3)
    _, n_grad = rkc_integrate(f, y0, lr * log_at, rtol=rtol, atol=atol, eps=np.finfo(obj.dtype).eps,
                              record=lambda y: out.append(obj.loss_per_token(*split(y))))
    return np.stack(out, 1), n_grad  # (S, n_eval, V)


def factored_adamw_trajectory(counts, E0, W0, *, lam, steps, lr, batch_size, r=1.0, lam_W=None, betas=(0.9, 0.999),
                              eps=1e-8, eval_every=None) -> FactoredTrajectory:
    """Per-token loss along the mean-field AdamW flow of the factored bigram from each start.

    The recursion of ``BatchedAdamW`` with the minibatch gradient replaced by its moments: m and v
    are the exponential averages (bias corrected) of E[g] and E[g²] = E[G²]/B + (1 − 1/B) E[G]²,
    G one sample's gradient, whose closed forms are ``adamw_shared.sample_moments``; the decay is
    decoupled, θ ← (1 − ηλ)θ − η m̂/(√v̂ + ε). ``betas=(0, 0)`` gives the Euler steps of
    θ̇ = −(E[g]/(√E[g²] + ε) + λθ), whose zeros are the equilibrium of
    ``factored_bigram_adamw_equilibrium``. Mean field: exact in expectation for m and v given
    the path, approximate in E[m̂/√v̂] ≈ E[m̂]/√E[v̂] (needs B·P(x)/(1 − β₂) ≫ 1 for the contexts
    and B·π_v/(1 − β₂) ≫ 1 for the tokens that matter). Cost O(n_ctx V d) per step and start.
    """
    C, E, W, lam_E, lam_W, steps, lr, r = _run_inputs(counts, E0, W0, lam, lam_W, steps, lr, r)
    B = as_positive_int(batch_size, "batch_size")
    eps = as_nonnegative(eps, "eps")
    b1, b2 = (float(b) for b in betas)
    for name, b in (("betas[0]", b1), ("betas[1]", b2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {name}={b!r}")
    obj = _Objective(C, r, lam_E, lam_W)
    law = bigram_law(C)
    log_at = eval_steps(steps, eval_every)
    out = [obj.loss_per_token(E, W)]
    for s in range(E.shape[0]):
        path = mean_field_adamw_path(E[s], W[s], law, r=r, B=B, lr=lr, lams=(lam_E, lam_W), betas=(b1, b2),
                                     eps=eps, log_at=log_at)
        out.append(np.stack([obj.loss_per_token(e[None], w[None])[0] for e, w in path]))
    loss = np.concatenate([out[0][:, None], np.stack(out[1:])], 1)  # (S, n_eval, V)
    pi = obj.pi
    seen = pi > 0
    agg = (loss[..., seen] * pi[seen]).sum(-1)
    return FactoredTrajectory(lam_E=lam_E, lam_W=lam_W, lr=lr, steps=log_at, token_probs=pi, loss_per_token=loss,
                              aggregate_loss=agg, integrator="adamw-mean-field", gradient_evaluations=steps)
