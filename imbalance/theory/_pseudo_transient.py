"""Pseudo-transient continuation for the steady state of a flow θ̇ = −F(θ) (private).

Kelley & Keyes (1998), "Convergence analysis of pseudo-transient continuation", SIAM J. Numer.
Anal. 35(2): each step is one linearly implicit Euler step of the flow,

    (I/Δt + J(θ)) δ = −F(θ),   θ ← θ + δ,

with the pseudo time step Δt grown by switched evolution relaxation (SER,
Δt ← max(Δt ‖F_old‖/‖F_new‖, Δt₀); the floor keeps a transient rise of ‖F‖, which a flow that is
not a gradient flow can have, from stalling the march): small steps follow the flow from its start (so the steady state
selected is the one the flow reaches), large steps are Newton steps. J is applied matrix-free by
forward differences of F and the linear system is solved inexactly by GMRES (Saad & Schultz
1986); a step that raises ‖F‖ by more than ``GROWTH`` is refused
and retried with Δt/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

GROWTH = 2.0  # a step may raise ‖F‖₂ by at most this factor (else it is refused, Δt /= 4)
DT_MAX = 1e12


@dataclass(frozen=True)
class PseudoTransientResult:
    """``theta`` the last iterate, ``residual`` max|F(theta)|, ``time`` Σ Δt of accepted steps
    (pseudo time, a flow time only while Δt is small), ``steps`` accepted steps, ``evaluations``
    calls of F (including the directional derivatives)."""

    theta: np.ndarray
    residual: float
    time: float
    steps: int
    evaluations: int


def _jvp(F, theta, f, counter):
    """v ↦ J(θ) v by a forward difference with step √ε_mach (1 + ‖θ‖)/‖v‖ (Kelley 2003, §5.2)."""
    scale = np.sqrt(np.finfo(float).eps) * (1.0 + np.linalg.norm(theta))

    def jv(v):
        nv = np.linalg.norm(v)
        if nv == 0:
            return np.zeros_like(v)
        h = scale / nv
        counter[0] += 1
        return (F(theta + h * v) - f) / h

    return jv


def pseudo_transient(F, theta, *, dt0, tol, max_steps=500, krylov_dim=30, eta=0.1,
                     max_evaluations=20_000, patience=60) -> PseudoTransientResult:
    """Steady state of θ̇ = −F(θ) from ``theta``: stop when max|F| < ``tol``.

    ``dt0`` the first pseudo time step, and the smallest one SER returns to; ``eta`` the relative
    GMRES tolerance (inexact Newton); ``krylov_dim`` its restart length. Stops early when max|F|
    has not reached a new minimum for ``patience`` accepted steps.
    """
    counter = [1]
    f = F(theta)
    dt0 = float(dt0)
    norm, dt, t, steps = np.linalg.norm(f), dt0, 0.0, 0
    best, best_step = np.abs(f).max(), 0
    while best >= tol and steps < max_steps and counter[0] < max_evaluations and steps - best_step <= patience:
        n = theta.size
        jv = _jvp(F, theta, f, counter)
        A = spla.LinearOperator((n, n), matvec=lambda v, dt=dt: v / dt + jv(v), dtype=float)
        delta, _ = spla.gmres(A, -f, rtol=eta, atol=0.0, restart=krylov_dim, maxiter=1)
        trial = theta + delta
        f_trial = F(trial)
        counter[0] += 1
        n_trial = np.linalg.norm(f_trial)
        if not np.isfinite(n_trial) or n_trial > GROWTH * norm:
            dt /= 4.0
            continue
        theta, f, t, steps = trial, f_trial, t + dt, steps + 1
        dt = min(max(dt * norm / max(n_trial, 1e-300), dt0), DT_MAX)
        norm = n_trial
        if np.abs(f).max() < best:
            best, best_step = np.abs(f).max(), steps
    return PseudoTransientResult(theta=theta, residual=float(np.abs(f).max()), time=t, steps=steps,
                                 evaluations=counter[0])
