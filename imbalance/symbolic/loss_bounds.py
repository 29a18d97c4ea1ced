"""T9, per-token loss ceilings from dual feasibility.

At the optimum ‖∇_Y f‖₂ ≤ μ, so every row obeys (w_x/s_x)‖p_x − q_x‖ ≤ μ. Among probability
vectors with p_v = q_v − δ the distance ‖p − q‖ is smallest when the other coordinates share δ
equally: ‖p − q‖² ≥ δ² V/(V − 1). Hence δ ≤ (μ s_x/w_x)√((V − 1)/V), and for a one-hot target
(UFM: w = π, s = √π) ℓ = −log p_k ≤ −log(1 − μ√((K − 1)/(K π))).
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size

__all__ = ["closest_point_with_fixed_coordinate", "ufm_ceiling"]

mu, pi = sp.symbols("mu pi", positive=True)


def closest_point_with_fixed_coordinate(V: int) -> dict:
    """Minimise Σ_{j≥2} d_j² subject to Σ_{j≥2} d_j = δ (the other coordinates of p − q absorb
    the deficit δ of coordinate 1), by Lagrange: {"argmin", "minimum" δ²/(V−1),
    "distance2" δ² + minimum = δ² V/(V−1), "gap" (0)}.

    >>> closest_point_with_fixed_coordinate(3)["gap"]
    0
    """
    V = check_size(V, "V", maximum=6)
    delta, lam = sp.symbols("delta lambda_L", positive=True)
    d = sp.symbols(f"d2:{V + 1}", real=True)
    L = sum(x**2 for x in d) - lam * (sum(d) - delta)
    sol = sp.solve([sp.diff(L, x) for x in d] + [sum(d) - delta], list(d) + [lam], dict=True)
    if len(sol) != 1:  # pragma: no cover
        raise AssertionError(sol)
    minimum = sp.simplify(sum(x**2 for x in d).subs(sol[0]))
    dist2 = sp.simplify(delta**2 + minimum)
    return {"argmin": [sol[0][x] for x in d], "minimum": minimum, "distance2": dist2,
            "gap": sp.simplify(dist2 - delta**2 * V / (V - 1))}


def ufm_ceiling(K: int) -> dict:
    """Solve √π · δ √(K/(K−1)) = μ for δ = 1 − p_k and return the loss ceiling −log(1 − δ).

    >>> ufm_ceiling(2)["ceiling"]
    -log(-sqrt(2)*mu/(2*sqrt(pi)) + 1)
    """
    K = check_size(K, "K", maximum=50)
    delta = sp.Symbol("delta", positive=True)
    sol = sp.solve(sp.Eq(sp.sqrt(pi) * delta * sp.sqrt(sp.Rational(K, K - 1)), mu), delta)
    if len(sol) != 1:  # pragma: no cover
        raise AssertionError(sol)
    return {"delta": sol[0], "ceiling": -sp.log(1 - sol[0])}
