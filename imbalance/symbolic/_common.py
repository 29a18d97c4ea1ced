"""Shared sympy pieces: the Wright omega function, softmax, validated sizes."""

from __future__ import annotations

import sympy as sp

from .._validate import as_positive_int

__all__ = ["wright_omega", "softmax", "check_size", "lambdify_numeric"]


class wright_omega(sp.Function):
    """Wright omega ω(x), the solution of ω + log ω = x (so ω(x) = W(eˣ) for real x).

    Kept as its own function because W(exp(x)) overflows in floating point for
    x > 709; ``lambdify_numeric`` maps it to ``scipy.special.wrightomega``.

    >>> x = sp.Symbol("x", real=True)
    >>> wright_omega(x).diff(x)
    wright_omega(x)/(wright_omega(x) + 1)
    >>> wright_omega(x).rewrite(sp.LambertW)
    LambertW(exp(x))
    """

    is_real = True
    is_positive = True

    def fdiff(self, argindex=1):
        # differentiate ω + log ω = x: ω'(1 + 1/ω) = 1
        w = self.func(*self.args)
        return w / (1 + w)

    def _eval_rewrite_as_LambertW(self, x, **kwargs):
        return sp.LambertW(sp.exp(x))

    @classmethod
    def eval(cls, x):
        if x == 1:
            return sp.Integer(1)
        if x.is_Number and x.is_zero:
            return sp.LambertW(1)


def omega_log_rule(expr: sp.Expr) -> sp.Expr:
    """Replace log(ω(x)) by x − ω(x), the defining relation of ω."""
    return expr.replace(lambda e: isinstance(e, sp.log) and isinstance(e.args[0], wright_omega),
                        lambda e: e.args[0].args[0] - e.args[0])


def softmax(z):
    """Softmax of a list of sympy expressions (a list of expressions)."""
    den = sp.Add(*[sp.exp(zj) for zj in z])
    return [sp.exp(zj) / den for zj in z]


def check_size(K, name: str = "K", maximum: int = 12) -> int:
    """An integer 2 <= K <= maximum (symbolic systems grow fast with K)."""
    K = as_positive_int(K, name, minimum=2)
    if K > maximum:
        raise ValueError(f"{name} must be <= {maximum} for a symbolic derivation, got {name}={K}")
    return K


def lambdify_numeric(args, expr):
    """``sympy.lambdify`` to numpy/scipy with ω evaluated by ``scipy.special.wrightomega``."""
    import scipy.special

    return sp.lambdify(args, expr, modules=[{"wright_omega": scipy.special.wrightomega}, "numpy", "scipy"])
