"""T5, the variational identity behind the unconstrained-features model (UFM).

    min_{W H = Z} (λ_W/2)‖W‖² + (λ_H/2)‖H D^{1/2}‖² = √(λ_W λ_H) ‖Z D^{1/2}‖_*,  D = diag(π).

Derived here in the scalar case (one class, one direction) with a sum-of-squares
certificate, and summed over a diagonal Z; the general matrix case is the chain
‖A B‖_* ≤ ‖A‖_F ‖B‖_F ≤ (‖A‖² + ‖B‖²)/2 with equality at the balanced SVD
factorisation, checked numerically in tests/properties.
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size

__all__ = ["scalar_variational_identity", "diagonal_variational_value"]

lam_W, lam_H = sp.symbols("lambda_W lambda_H", positive=True)


def scalar_variational_identity(weight: sp.Expr | None = None) -> dict:
    """min over w > 0 of (λ_W/2) w² + (λ_H/2) π (z/w)² for z > 0.

    Returns {"objective", "argmin" w*, "minimum" (simplified value at w*),
    "claimed" √(λ_W λ_H π) z, "gap" minimum − claimed (0), "certificate"
    objective − claimed − (√λ_W w − √(λ_H π) z/w)²/2 (0): the objective minus the claimed
    value is a square, so the minimum is global}.

    >>> scalar_variational_identity()["minimum"]
    sqrt(lambda_H)*sqrt(lambda_W)*sqrt(pi)*z
    >>> scalar_variational_identity()["gap"], scalar_variational_identity()["certificate"]
    (0, 0)
    """
    w, z = sp.symbols("w z", positive=True)
    pi = sp.Symbol("pi", positive=True) if weight is None else weight
    f = lam_W / 2 * w**2 + lam_H / 2 * pi * (z / w) ** 2
    crit = [c for c in sp.solve(sp.diff(f, w), w) if c.is_positive is not False]
    if len(crit) != 1:  # pragma: no cover
        raise AssertionError(crit)
    w_star = crit[0]
    minimum = sp.simplify(f.subs(w, w_star))
    claimed = sp.sqrt(lam_W * lam_H * pi) * z
    square = (sp.sqrt(lam_W) * w - sp.sqrt(lam_H * pi) * z / w) ** 2 / 2
    return {"objective": f, "argmin": w_star, "minimum": minimum, "claimed": claimed,
            "gap": sp.simplify(minimum - claimed), "certificate": sp.simplify(sp.expand(f - claimed - square))}


def diagonal_variational_value(n: int) -> dict:
    """Diagonal Z = diag(z_k), D = diag(π_k): the problem splits into n scalar ones,
    so the minimum is Σ √(λ_W λ_H π_k) |z_k|, which is √(λ_W λ_H) times the nuclear
    norm of Z D^{1/2} (singular values of a diagonal matrix are |entries|).

    >>> diagonal_variational_value(2)["gap"]
    0
    """
    n = check_size(n, "n", maximum=6)
    z = sp.symbols(f"z1:{n + 1}", real=True)
    pi = sp.symbols(f"pi1:{n + 1}", positive=True)
    per_entry = [sp.sqrt(lam_W * lam_H * p) * sp.Abs(zk) for zk, p in zip(z, pi)]
    ZD = sp.diag(*[zk * sp.sqrt(p) for zk, p in zip(z, pi)])
    nuclear = sp.Add(*ZD.singular_values())
    total = sp.Add(*per_entry)
    return {"minimum": total, "nuclear": nuclear,
            "gap": sp.simplify(total - sp.sqrt(lam_W * lam_H) * nuclear)}
