"""T6, mitigations: frequency-scaled decay and loss reweighting equalise κ (hence margins);
post-hoc logit adjustment maps the cross-entropy Bayes predictor to the token-balanced one.

One-hot contexts (T2, T3): under L2 the per-context fixed point depends on P(x), r, λ
only through κ_x = P(x) r²/λ_x; under AdamW (ε → 0, deterministic) the margin is
m_x = 2 r ρ_x/λ_x. Choosing λ_x ∝ P(x) (L2) or λ_x ∝ ρ_x (AdamW) makes both the same
for every context; reweighting the loss of context x by c_x multiplies κ_x by c_x.
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size
from .adamw import deterministic_adamw_margin, deterministic_rho
from .adamw import lam as lam_adamw
from .adamw import r as r_adamw

__all__ = ["scaled_decay_kappa", "scaled_decay_adamw_margin", "reweighted_kappa", "balanced_bayes_predictor",
           "logit_adjusted"]

P, r, lam0 = sp.symbols("P r lambda_0", positive=True)


def scaled_decay_kappa() -> sp.Expr:
    """κ_x with λ_x = λ₀ P(x): no P left.

    >>> scaled_decay_kappa()
    r**2/lambda_0
    """
    from .bigram import P as P_b
    from .bigram import bigram_fixed_point
    from .bigram import lam as lam_b
    from .bigram import r as r_b

    kappa = bigram_fixed_point(2)["kappa"]  # P r²/λ, derived from the gradient
    return sp.simplify(kappa.subs({P_b: P, r_b: r}).subs(lam_b, lam0 * P))


def scaled_decay_adamw_margin() -> sp.Expr:
    """AdamW, ε → 0, λ_x = λ₀ ρ_x: m_x = 2 r/λ₀ for every context.

    >>> scaled_decay_adamw_margin()
    2*r/lambda_0
    """
    m = deterministic_adamw_margin()
    rho = deterministic_rho()  # derived from the minibatch gradient's moments, not typed in
    return sp.simplify(m.subs(lam_adamw, lam0 * rho).subs(r_adamw, r))


def reweighted_kappa() -> sp.Expr:
    """Loss of context x weighted by c_x = 1/P(x): the gradient P c r (p − q) + λ w gives κ = r²/λ₀.

    >>> reweighted_kappa()
    r**2/lambda_0
    """
    c = sp.Symbol("c", positive=True)
    w, pj, qj = sp.symbols("w p q", real=True)
    grad = P * c * r * (pj - qj) + lam0 * w
    z = r * sp.solve(grad, w)[0]
    kappa = sp.simplify(z / (qj - pj))
    return sp.simplify(kappa.subs(c, 1 / P))


def balanced_bayes_predictor(K: int = 3) -> dict:
    """T6c: minimise the token-balanced cross-entropy of one context, Σ_v (q_v/π_v)(−log p_v),
    over the simplex (Lagrange multiplier μ for Σ p = 1): p_v = (q_v/π_v) / Σ_u q_u/π_u.

    Returns the symbols ``q``, ``pi``, the minimiser ``p`` (a list) and the multiplier ``mu``.
    The objective is convex in p and the stationary point is interior, so it is the minimum.

    >>> balanced_bayes_predictor(2)["p"][0]
    pi_2*q_1/(pi_1*q_2 + pi_2*q_1)
    """
    K = check_size(K, maximum=6)  # sympy's solve grows fast with K
    q = sp.symbols(f"q_1:{K + 1}", positive=True)
    pi = sp.symbols(f"pi_1:{K + 1}", positive=True)
    p = sp.symbols(f"p_1:{K + 1}", positive=True)
    mu = sp.Symbol("mu", positive=True)
    lagr = sum(-(qv / pv_) * sp.log(pp) for qv, pv_, pp in zip(q, pi, p)) + mu * (sum(p) - 1)
    stat = sp.solve([sp.diff(lagr, pp) for pp in p] + [sum(p) - 1], list(p) + [mu], dict=True)
    if len(stat) != 1:
        raise RuntimeError(f"expected one stationary point, sympy found {len(stat)}")
    sol = stat[0]
    return {"q": q, "pi": pi, "p": [sp.simplify(sol[pp]) for pp in p], "mu": sp.simplify(sol[mu])}


def logit_adjusted(logits, pi, tau) -> list:
    """softmax(z − τ log π) as a list of expressions (the post-hoc adjustment, Menon et al. 2021)."""
    e = [sp.exp(z - tau * sp.log(pv)) for z, pv in zip(logits, pi)]
    tot = sum(e)
    return [x / tot for x in e]
