"""T1, the unigram (bias-only) model under L2 decay, derived with sympy.

Objective  L(b) = −Σ_k π_k log softmax(b)_k + (λ/2)‖b‖²,  π_k > 0, Σ π_k = 1, λ > 0.

Every function builds its result from the objective (differentiation, implicit
differentiation, series), so a test can compare it with the closed forms stated in
``proofs/T1_unigram.md`` and, after ``lambdify``, with the numeric solver in ``imbalance.theory``
and the asymptotes in ``imbalance.formulas``.
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size, omega_log_rule, softmax, wright_omega

__all__ = [
    "unigram_symbols", "unigram_objective", "unigram_stationarity", "unigram_omega_solution",
    "unigram_small_lam_limit", "unigram_first_order_shift", "unigram_first_order_closed_form",
    "unigram_large_lam_series",
]

lam = sp.Symbol("lambda", positive=True)
t = sp.Symbol("t", real=True)
eps = sp.Symbol("epsilon", positive=True)  # 1/λ in the large-λ expansion


def unigram_symbols(K: int):
    """(π_1..π_K positive, b_1..b_K real, λ positive); closed forms accept K ≤ 256."""
    K = check_size(K, maximum=256)
    pi = sp.symbols(f"pi1:{K + 1}", positive=True)
    b = sp.symbols(f"b1:{K + 1}", real=True)
    return pi, b, lam


def unigram_objective(K: int) -> sp.Expr:
    """−Σ π_k log softmax(b)_k + (λ/2)‖b‖².

    >>> unigram_objective(2)
    lambda*(b1**2 + b2**2)/2 - pi1*log(exp(b1)/(exp(b1) + exp(b2))) - pi2*log(exp(b2)/(exp(b1) + exp(b2)))
    """
    K = check_size(K, maximum=256)
    pi, b, _ = unigram_symbols(K)
    p = softmax(b)
    return -sp.Add(*[pk * sp.log(qk) for pk, qk in zip(pi, p)]) + lam / 2 * sp.Add(*[bk**2 for bk in b])


def unigram_stationarity(K: int) -> list[sp.Expr]:
    """∂L/∂b_k, simplified to (Σπ)·p_k − π_k + λ b_k; zero at the minimiser.

    With Σπ = 1 this is λ b = π − p, and summing over k gives Σ b = 0.

    >>> unigram_stationarity(2)[0]
    b1*lambda - pi1 + (pi1 + pi2)*exp(b1)/(exp(b1) + exp(b2))
    """
    K = check_size(K, maximum=256)
    pi, b, _ = unigram_symbols(K)
    L = unigram_objective(K)
    p = softmax(b)
    grads = [sp.diff(L, bk) for bk in b]
    out = []
    for k, g in enumerate(grads):
        claimed = lam * b[k] - pi[k] + sp.Add(*pi) * p[k]
        if sp.simplify(g - claimed) != 0:  # pragma: no cover - guards the derivation itself
            raise AssertionError(f"gradient of component {k} is not (Σπ)p_k − π_k + λ b_k")
        out.append(claimed)
    return out


def unigram_omega_solution(K: int) -> dict:
    """The Wright-omega form: p_k = λ ω(π_k/λ − t), b_k = (π_k − p_k)/λ.

    t is fixed by Σ_k p_k = 1. Returns {"p": [...], "b": [...], "t": t,
    "normalisation": Σ p_k − 1, "log_odds_gap": [b_k − log p_k − (b_1 − log p_1)]};
    the gaps simplify to 0, so p = softmax(b) and λ b = π − p hold together.

    >>> unigram_omega_solution(2)["p"][0]
    lambda*wright_omega(-t + pi1/lambda)
    >>> unigram_omega_solution(3)["log_odds_gap"]
    [0, 0]
    """
    K = check_size(K, maximum=256)
    pi, _, _ = unigram_symbols(K)
    p = [lam * wright_omega(pk / lam - t) for pk in pi]
    b = [(pk - qk) / lam for pk, qk in zip(pi, p)]
    # p = softmax(b) iff b_k − log p_k is the same for every k (it is then log Σ e^b).
    shift = [omega_log_rule(sp.expand_log(bk - sp.log(qk), force=True)) for bk, qk in zip(b, p)]
    gaps = [sp.expand(s - shift[0]) for s in shift[1:]]
    return {"p": p, "b": b, "t": t, "normalisation": sp.Add(*p) - 1, "log_odds_gap": gaps}


def unigram_small_lam_limit(K: int) -> list[sp.Expr]:
    """b⁰_k = log π_k − (1/K) Σ_j log π_j, the λ → 0 limit (logit-adjustment prior).

    >>> unigram_small_lam_limit(2)
    [log(pi1)/2 - log(pi2)/2, -log(pi1)/2 + log(pi2)/2]
    """
    K = check_size(K, maximum=256)
    pi, _, _ = unigram_symbols(K)
    mean_log = sp.Add(*[sp.log(p) for p in pi]) / K
    return [sp.log(p) - mean_log for p in pi]


def _simplex_sub(pi):
    """π_K = 1 − Σ_{k<K} π_k."""
    return {pi[-1]: 1 - sp.Add(*pi[:-1])}


def unigram_first_order_shift(K: int) -> list[sp.Expr]:
    """∂b/∂λ at λ = 0, derived by implicit differentiation of λ b + p(b) − π = 0.

    d/dλ gives (λ I + J(b)) b' + b = 0 with J the softmax Jacobian; at λ = 0,
    J(b⁰) = diag(π) − π πᵀ is singular along 1, and Σ b = 0 for every λ adds
    Σ b' = 0. The system is solved with π_K = 1 − Σ_{k<K} π_k substituted.
    """
    pi, b, _ = unigram_symbols(check_size(K, maximum=6))
    b0 = unigram_small_lam_limit(K)
    p = softmax(b)
    J = sp.Matrix(K, K, lambda i, j: sp.diff(p[i], b[j]))
    J0 = J.subs(dict(zip(b, b0)))
    J0 = sp.simplify(J0.subs(_simplex_sub(pi)))
    d = sp.symbols(f"d1:{K + 1}", real=True)
    rhs = [-bk.subs(_simplex_sub(pi)) for bk in b0]
    eqs = [sp.Add(*[J0[i, j] * d[j] for j in range(K)]) - rhs[i] for i in range(K)] + [sp.Add(*d)]
    sol = sp.solve(eqs, d, dict=True)
    if len(sol) != 1:  # pragma: no cover
        raise AssertionError(f"expected one solution of the linearised system, got {sol}")
    return [sp.simplify(sol[0][dk]) for dk in d]


def unigram_first_order_closed_form(K: int) -> list[sp.Expr]:
    """The stated closed form −b⁰_k/π_k + (1/K) Σ_j b⁰_j/π_j (``proofs/T1_unigram.md``; typed in, not
    derived: the tests compare it with ``unigram_first_order_shift``)."""
    K = check_size(K, maximum=256)
    pi, _, _ = unigram_symbols(K)
    b0 = unigram_small_lam_limit(K)
    mean = sp.Add(*[bj / pj for bj, pj in zip(b0, pi)]) / K
    return [-bk / pk + mean for bk, pk in zip(b0, pi)]


def unigram_large_lam_series(K: int, order: int = 2) -> list[sp.Expr]:
    """b_k as a series in ε = 1/λ to O(ε^(order+1)), with Σπ = 1.

    Ansatz b_k = Σ_n c_kn εⁿ in ε(π_k − p_k(b)) − b_k = 0, solved order by order.

    >>> [sp.factor(e) for e in unigram_large_lam_series(2, order=2)][0]
    -epsilon*(epsilon - 2)*(2*pi1 - 1)/4
    """
    K = check_size(K, maximum=5)
    pi, _, _ = unigram_symbols(K)
    sub = _simplex_sub(pi)
    coeffs = [[sp.Symbol(f"c_{k + 1}_{n}") for n in range(1, order + 1)] for k in range(K)]
    b = [sp.Add(*[c * eps**n for n, c in enumerate(row, start=1)]) for row in coeffs]
    p = softmax(b)
    resid = [sp.series(eps * (pi[k] - p[k]) - b[k], eps, 0, order + 1).removeO() for k in range(K)]
    resid = [sp.expand(r.subs(sub)) for r in resid]
    solved: dict = {}
    for n in range(1, order + 1):
        eqs = [sp.expand(r.coeff(eps, n).subs(solved)) for r in resid]
        unknowns = [row[n - 1] for row in coeffs]
        sol = sp.solve(eqs, unknowns, dict=True)
        if len(sol) != 1:  # pragma: no cover
            raise AssertionError(f"order {n}: expected one solution, got {sol}")
        solved.update({k: sp.simplify(v) for k, v in sol[0].items()})
    return [sp.simplify(bk.subs(solved)).subs(pi[-1], sub[pi[-1]]) for bk in b]
