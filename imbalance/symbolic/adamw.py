"""T3, the AdamW (decoupled decay) equilibrium of the bigram model, derived with sympy.

Sampling model: a minibatch holds B i.i.d. pairs (x_i, y_i); the context of interest
appears with probability P, its next token is j with probability q. The gradient of the
batch-mean loss with respect to the output weight (x, j) is
    g = (r/B) Σ_i 1{x_i = x} (p_j − 1{y_i = j}),
so its moment generating function is M(s)^B with M the per-sample one; the count of
context x in the batch is Binomial(B, P), which the tests check for small B.
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size

__all__ = [
    "adamw_symbols", "gradient_moments", "adamw_stationarity", "deterministic_rho",
    "deterministic_adamw_margin", "adamw_margin_equation",
]

P, q, r, lam, eps = sp.symbols("P q r lambda epsilon", positive=True)
p = sp.Symbol("p", positive=True)
B = sp.Symbol("B", integer=True, positive=True)
w = sp.Symbol("w", real=True)
m = sp.Symbol("m", real=True)
s = sp.Symbol("s", real=True)


def adamw_symbols():
    """(P, q, p, r, λ, ε, B, w)."""
    return P, q, p, r, lam, eps, B, w


def gradient_moments() -> tuple[sp.Expr, sp.Expr]:
    """(E[g], E[g²]) from the MGF of the minibatch gradient.

    >>> Eg, Eg2 = gradient_moments()
    >>> Eg
    P*r*(p - q)
    >>> mu, sigma2 = p - q, q*(1 - q)
    >>> sp.simplify(Eg2 - r**2*(P*sigma2 + P*(1 - P)*mu**2 + B*P**2*mu**2)/B)
    0
    """
    # per sample: absent (1 − P), or present with y = j (P q) or y ≠ j (P (1 − q))
    per_sample = (1 - P) + P * (q * sp.exp(s * r * (p - 1)) + (1 - q) * sp.exp(s * r * p))
    mgf = per_sample.subs(s, s / B) ** B
    Eg = sp.simplify(sp.diff(mgf, s).subs(s, 0))
    Eg2 = sp.simplify(sp.diff(mgf, s, 2).subs(s, 0))
    return Eg, Eg2


def adamw_stationarity() -> sp.Expr:
    """λ w + E[g]/(√E[g²] + ε): zero at the AdamW fixed point (β1² ≤ β2, long β2 window).

    The update is w ← w − η(m̂/(√v̂ + ε) + λ w) with m̂ → E[g], v̂ → E[g²].
    """
    Eg, Eg2 = gradient_moments()
    return lam * w + Eg / (sp.sqrt(Eg2) + eps)


def deterministic_rho() -> sp.Expr:
    """ρ = E[g]/√E[g²] for the correct token (q = 1, p < 1): √(Bπ/(1 + (B − 1)π)) in magnitude.

    >>> deterministic_rho()
    sqrt(B)*sqrt(P)/sqrt(B*P - P + 1)
    """
    Eg, Eg2 = gradient_moments()
    a = sp.Symbol("a", positive=True)  # a = 1 − p > 0 for the correct token
    ratio = (Eg / sp.sqrt(Eg2)).subs({q: 1, p: 1 - a})
    ratio = sp.simplify(sp.powsimp(sp.factor(ratio), force=True))
    rho = sp.sqrt(B) * sp.sqrt(P) / sp.sqrt(B * P - P + 1)
    if sp.simplify(ratio + rho) != 0:  # pragma: no cover - E[g] < 0 here
        raise AssertionError(f"E[g]/sqrt(E[g²]) = {ratio}, expected −ρ")
    # wrong token (q = 0): E[g] > 0 and the same magnitude
    ratio0 = sp.simplify((Eg / sp.sqrt(Eg2)).subs({q: 0}))
    if sp.simplify(ratio0 - rho) != 0:  # pragma: no cover
        raise AssertionError(f"wrong-token ratio {ratio0} is not ρ")
    return rho


def deterministic_adamw_margin() -> sp.Expr:
    """ε → 0: w_k = ρ/λ and w_j = −ρ/λ (j ≠ k), so m = r(w_k − w_j) = 2 r ρ/λ.

    >>> deterministic_adamw_margin()
    2*sqrt(B)*sqrt(P)*r/(lambda*sqrt(B*P - P + 1))
    """
    rho = deterministic_rho()
    stat = adamw_stationarity().subs(eps, 0)
    # solve each coordinate's stationarity for w (p enters only through the sign of μ)
    a = sp.Symbol("a", positive=True)
    wk = sp.solve(sp.simplify(sp.powsimp(stat.subs({q: 1, p: 1 - a}), force=True)), w)
    wj = sp.solve(sp.simplify(stat.subs({q: 0})), w)
    if len(wk) != 1 or len(wj) != 1:  # pragma: no cover
        raise AssertionError((wk, wj))
    margin = sp.simplify(r * (wk[0] - wj[0]))
    if sp.simplify(margin - 2 * r * rho / lam) != 0:  # pragma: no cover
        raise AssertionError(margin)
    return 2 * r * rho / lam


def adamw_margin_equation(K) -> sp.Expr:
    """ε ≥ 0, deterministic case: margin m solves m = r (w_k(m) − w_j(m)).

    Given m, a = p_k = eᵐ/(eᵐ + K − 1); then w_k and w_j follow from their own
    stationarity equations (q = 1, p = a and q = 0, p = (1 − a)/(K − 1)). Returns
    r(w_k − w_j) − m as an expression in m, P, B, r, λ, ε (zero at the equilibrium).
    ``K`` (the vocabulary size, an integer ≥ 2) enters only as a constant, so the expression
    does not grow with it; K up to 10¹² is accepted.
    """
    K = check_size(K, maximum=10**12)
    Eg, Eg2 = gradient_moments()
    a = sp.exp(m) / (sp.exp(m) + K - 1)
    def weight(qv, pv):
        return -(Eg / (sp.sqrt(Eg2) + eps)).subs({q: qv, p: pv}) / lam
    return r * (weight(1, a) - weight(0, (1 - a) / (K - 1))) - m
