"""T7, the factored bigram LM: logits Z = W E, penalty (λ_W/2)‖W‖² + (λ_E/2)‖E‖².

Untied: the T5 identity with unit weights (D = I), min_{W E = Z} = √(λ_W λ_E)‖Z‖_*.
Tied (one matrix E used as both tables, W = Eᵀ, decayed once by λ): Z = EᵀE ⪰ 0 and the
penalty is (λ/2)‖E‖² = (λ/2) tr Z; for Z ⪰ 0, tr Z = ‖Z‖_*. (Decaying "W" and "E" separately
would decay the one matrix twice: (λ_W + λ_E)/2 · tr Z is not the tied model.)
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size
from .ufm import lam_H, scalar_variational_identity

__all__ = ["untied_scalar_identity", "tied_penalty", "lam"]

lam_E = sp.Symbol("lambda_E", positive=True)
lam = sp.Symbol("lambda", positive=True)  # the one decay of a tied matrix


def untied_scalar_identity() -> dict:
    """The T5 scalar identity with π = 1 and λ_H renamed λ_E.

    >>> untied_scalar_identity()["minimum"]
    sqrt(lambda_E)*sqrt(lambda_W)*z
    """
    out = scalar_variational_identity(weight=sp.Integer(1))
    return {k: (v.subs(lam_H, lam_E) if isinstance(v, sp.Basic) else v) for k, v in out.items()}


def tied_penalty(d: int, V: int) -> dict:
    """For E (d × V) decayed by λ and W = Eᵀ (the same matrix): (λ/2)‖E‖² − (λ/2) tr(EᵀE) (0),
    and Z = EᵀE is symmetric with xᵀ Z x = ‖E x‖² (so Z ⪰ 0).

    >>> tied_penalty(2, 2)["gap"], tied_penalty(2, 2)["psd_gap"]
    (0, 0)
    """
    d = check_size(d, "d", maximum=5)
    V = check_size(V, "V", maximum=5)
    E = sp.Matrix(d, V, lambda i, j: sp.Symbol(f"e_{i + 1}{j + 1}", real=True))
    Z = E.T * E
    penalty = lam / 2 * sp.Add(*[e**2 for e in E])
    x = sp.Matrix(V, 1, lambda i, _: sp.Symbol(f"x_{i + 1}", real=True))
    Ex = E * x
    return {
        "penalty": penalty, "Z": Z,
        "gap": sp.simplify(penalty - lam / 2 * Z.trace()),
        "symmetric": Z == Z.T,
        "psd_gap": sp.simplify((x.T * Z * x)[0] - (Ex.T * Ex)[0]),
    }
