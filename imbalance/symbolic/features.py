"""T4, the norm bound for softmax regression on fixed features, derived with sympy.

Objective  E_{(h, y)} CE(W h + b, y) + (λ/2)‖W‖²,  ‖h‖ ≤ R, bias b not decayed.
Stationarity in w_c and b_c gives λ w_c = E[(1{y=c} − p_c) h] and E[p_c] = π_c, hence
‖w_c‖ ≤ R E|1{y=c} − p_c| = R (2π_c − 2E[1{y=c} p_c]) ≤ 2 π_c R/λ · λ.
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size, softmax

__all__ = ["per_sample_gradients", "abs_residual_identity", "norm_bound", "adamw_weight_bound"]

lam, R = sp.symbols("lambda R", positive=True)


def per_sample_gradients(K: int, d: int, y: int = 0) -> dict:
    """∂/∂W and ∂/∂b of CE(W h + b, y) for symbolic W (K×d), b, h; returns the
    differences from (p − e_y) hᵀ and p − e_y (all zero after simplification).

    Averaging the first over samples and adding λ W gives λ w_c = E[(1{y=c} − p_c) h]
    at a stationary point; the second gives E[p_c] = π_c.

    >>> per_sample_gradients(2, 2)["weight_residual"]
    Matrix([
    [0, 0],
    [0, 0]])
    """
    K = check_size(K, maximum=6)
    d = check_size(d, "d", maximum=6) if d != 1 else 1
    if not (isinstance(y, int) and 0 <= y < K):
        raise ValueError(f"y must be an integer class index in [0, {K}), got y={y!r}")
    W = sp.Matrix(K, d, lambda i, j: sp.Symbol(f"w_{i + 1}{j + 1}", real=True))
    b = sp.Matrix(K, 1, lambda i, _: sp.Symbol(f"b_{i + 1}", real=True))
    h = sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"h_{i + 1}", real=True))
    z = W * h + b
    p = sp.Matrix(softmax(list(z)))
    loss = -sp.log(p[y])
    e_y = sp.Matrix(K, 1, lambda i, _: 1 if i == y else 0)
    gW = sp.Matrix(K, d, lambda i, j: sp.diff(loss, W[i, j]))
    gb = sp.Matrix(K, 1, lambda i, _: sp.diff(loss, b[i]))
    return {
        "weight_residual": sp.simplify(gW - (p - e_y) * h.T),
        "bias_residual": sp.simplify(gb - (p - e_y)),
    }


def abs_residual_identity() -> dict:
    """|Y − p| = Y + p − 2 Y p for Y ∈ {0, 1}, p ∈ [0, 1]; taking expectations with
    E[p_c] = π_c gives E|1{y=c} − p_c| = 2π_c − 2E[1{y=c} p_c] ≤ 2π_c.

    >>> abs_residual_identity()["cases"]
    [0, 0]
    """
    p = sp.Symbol("p", nonnegative=True)
    u = sp.Symbol("u", nonnegative=True)  # p = 1 − u, so p ≤ 1 is u ≥ 0
    cases = [sp.simplify(sp.Abs(0 - p) - p),                         # Y = 0
             sp.simplify(sp.Abs(1 - (1 - u)) - (1 + (1 - u) - 2 * (1 - u)))]  # Y = 1
    return {"cases": cases}


def norm_bound() -> sp.Expr:
    """2 π_c R/λ.

    >>> norm_bound()
    2*R*pi_c/lambda
    """
    return 2 * sp.Symbol("pi_c", positive=True) * R / lam


def adamw_weight_bound() -> dict:
    """AdamW analogue: λ|w| = |E g|/(√E g² + ε) ≤ 1 because E g² − (E g)² = Var g ≥ 0.

    Returns {"variance": E[g²] − E[g]² for the bigram sampling model (T3)}, which is a
    sum of nonnegative terms, and the bound 1/λ.

    >>> adamw_weight_bound()["variance"]
    P*r**2*(q*(1 - q) + (1 - P)*(p - q)**2)/B
    """
    from .adamw import B, P, gradient_moments, p, q, r

    Eg, Eg2 = gradient_moments()
    var = r**2 * P * ((1 - P) * (p - q) ** 2 + q * (1 - q)) / B
    if sp.simplify(Eg2 - Eg**2 - var) != 0:  # pragma: no cover
        raise AssertionError("variance of the minibatch gradient")
    return {"variance": var, "bound": 1 / lam}
