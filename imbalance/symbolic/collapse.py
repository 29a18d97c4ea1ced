"""T8, the exact collapse law: the within-group block of the loss gradient and the thresholds.

A group G of m ≥ 2 classes with one frequency π_G whose logits are flat inside G (every row
gives the classes of G one common logit, as at a merged optimum): the gradient of the loss in
the nuclear-norm coordinates, ∇_Y f = D^{1/2}(P − I) (UFM, Y = D^{1/2}Z) or D(P − I)
(factored copy family, Y = Z), maps the contrast space C = {v : supp v ⊆ G, Σv = 0} to itself
as −√π_G·I resp. −π_G·I, whatever the other classes. The optimality condition ‖·‖₂ ≤ μ on
that block gives π_G ≤ μ² (UFM) and π_G ≤ μ (LM); R* solves π_B(R) = π* in the two-group family.
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size

__all__ = ["contrast_block", "two_group_threshold"]

lam_W, lam_H, R = sp.symbols("lambda_W lambda_H R", positive=True)


def contrast_block(m: int, n_other: int, weighted: bool = True) -> dict:
    """Symbolic K = m + n_other classes, group = the first m with frequency π_G, every other
    probability a free symbol (rows flat inside G). Returns {"block": Bᵀ ∇_Y f B on an orthonormal
    basis B of C, "expected": −√π_G I (weighted) or −π_G I, "gap": block − expected (zero)}.

    >>> contrast_block(2, 1)["gap"]
    Matrix([[0]])
    """
    m = check_size(m, "m", maximum=4)
    if m < 2:
        raise ValueError(f"m must be >= 2 (a group to merge), got m={m}")
    if n_other not in (0, 1, 2, 3):
        raise ValueError(f"n_other must be an integer in 0..3 for a symbolic derivation, got n_other={n_other!r}")
    K = m + n_other
    pg = sp.Symbol("pi_G", positive=True)
    pis = [pg] * m + list(sp.symbols(f"pi_o1:{n_other + 1}", positive=True))
    rows = []
    for k in range(K):
        a = sp.Symbol(f"a_{k}", positive=True)  # the common probability of G in row k
        others = list(sp.symbols(f"p_{k}_1:{n_other + 1}", positive=True))
        rows.append([a] * m + others)
    P = sp.Matrix(rows)
    scale = sp.diag(*[sp.sqrt(p) if weighted else p for p in pis])
    G = scale * (P - sp.eye(K))
    helmert = [sp.Matrix([1 if i < j else (-j if i == j else 0) for i in range(K)]) / sp.sqrt(j * (j + 1))
               for j in range(1, m)]
    basis = sp.Matrix.hstack(*helmert)  # (K, m−1) Helmert basis of C
    block = sp.simplify(basis.T * G * basis)
    expected = -(sp.sqrt(pg) if weighted else pg) * sp.eye(m - 1)
    return {"block": block, "expected": expected, "gap": sp.simplify(block - expected)}


def two_group_threshold(model: str = "ufm") -> dict:
    """R* of ``two_group_pi``: π_B = 1/(K_A R + K_B) equals π* = λ_Wλ_H (UFM) or √(λ_Wλ_H) (LM).

    >>> two_group_threshold()["R_star"]
    -(K_B*lambda_H*lambda_W - 1)/(K_A*lambda_H*lambda_W)
    """
    ka, kb = sp.symbols("K_A K_B", positive=True)
    pstar = lam_W * lam_H if model == "ufm" else sp.sqrt(lam_W * lam_H)
    sol = sp.solve(sp.Eq(1 / (ka * R + kb), pstar), R)
    if len(sol) != 1:  # pragma: no cover
        raise AssertionError(sol)
    return {"pi_star": pstar, "R_star": sp.factor(sp.simplify(sol[0]))}
