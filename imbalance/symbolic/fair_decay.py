"""T6b: AdamW equilibria of the deterministic bigram under fair-decay variants, derived with sympy.

Builds on T3 (``adamw.gradient_moments``: the moments of the batch-mean gradient of one output
weight). Variants: a per-row decay scale c; ``lazy="decay"`` decays only in steps where the row is
in the batch (probability a = 1 − (1 − P)^B per step); ``lazy="moments"`` also updates m, v and takes
the step only then, so its moments are the conditional ones E[g | N ≥ 1] = E[g]/a and
E[g² | N ≥ 1] = E[g²]/a (g vanishes when N = 0).
"""

from __future__ import annotations

import sympy as sp

from .adamw import B, P, eps, gradient_moments, lam, m, p, q, r, w

__all__ = [
    "D",
    "a",
    "c",
    "deterministic_margin",
    "fair_scale",
    "lazy_moments_index_limits",
    "margin_equation",
    "positive_form",
    "presence",
    "variant_stationarity",
]

c = sp.Symbol("c", positive=True)  # the row's decay scale
a = sp.Symbol("a", positive=True)  # stands for the presence probability 1 − (1 − P)^B
D = sp.Symbol("D", positive=True)  # stands for 1 + (B − 1)P
_LAZY = ("none", "decay", "moments")


def presence() -> sp.Expr:
    """a = P(N ≥ 1), N ~ Binomial(B, P) the row's count in the batch.

    >>> presence()
    1 - (1 - P)**B
    """
    return 1 - (1 - P) ** B


def _check(lazy):
    if lazy not in _LAZY:
        raise ValueError(f"lazy must be one of {list(_LAZY)}, got lazy={lazy!r}")


def variant_stationarity(lazy: str = "none") -> sp.Expr:
    """Mean update per step of one weight (zero at the equilibrium), ε ≥ 0.

    dense moments:  a^[lazy=decay] λ c w + E[g]/(√E[g²] + ε);
    lazy moments:   a (λ c w + (E[g]/a)/(√(E[g²]/a) + ε))  (the step happens with probability a).
    """
    _check(lazy)
    Eg, Eg2 = gradient_moments()
    a = presence()
    if lazy == "moments":
        return a * (lam * c * w + (Eg / a) / (sp.sqrt(Eg2 / a) + eps))
    delta = a if lazy == "decay" else 1
    return delta * lam * c * w + Eg / (sp.sqrt(Eg2) + eps)


def _weights_eps0(lazy):
    """(target weight, other weight) solving the ε = 0 stationarity (q = 1, p = 1 − t; q = 0, p = t)."""
    t = sp.Symbol("t", positive=True)  # 1 − p_k for the target, p_j for another token; only signs matter
    stat = variant_stationarity(lazy).subs(eps, 0)
    wk = sp.solve(sp.powsimp(sp.simplify(stat.subs({q: 1, p: 1 - t})), force=True), w)
    wj = sp.solve(sp.powsimp(sp.simplify(stat.subs({q: 0, p: t})), force=True), w)
    if len(wk) != 1 or len(wj) != 1:  # pragma: no cover
        raise AssertionError((wk, wj))
    return sp.simplify(wk[0]), sp.simplify(wj[0])


def positive_form(expr: sp.Expr) -> sp.Expr:
    """Write 1 − (1 − P)^B as a and 1 + (B − 1)P as D (both positive), so that square roots simplify."""
    expr = expr.subs(1 - (1 - P) ** B, a).subs((1 - P) ** B, 1 - a).subs(B * P - P + 1, D)
    return sp.simplify(sp.powsimp(sp.powdenest(expr, force=True), force=True))


def deterministic_margin(lazy: str = "none") -> sp.Expr:
    """ε → 0 margin m = r(w_k − w_j) = 2 r ρ √α/(λ c δ) with ρ = √(BP/D) (α = a for lazy moments, δ = a for
    lazy decay or moments, else 1), in ``positive_form``.

    >>> deterministic_margin("none")
    2*sqrt(B)*sqrt(P)*r/(sqrt(D)*c*lambda)
    >>> deterministic_margin("decay")
    2*sqrt(B)*sqrt(P)*r/(sqrt(D)*a*c*lambda)
    >>> deterministic_margin("moments")
    2*sqrt(B)*sqrt(P)*r/(sqrt(D)*sqrt(a)*c*lambda)
    """
    _check(lazy)
    wk, wj = _weights_eps0(lazy)
    return positive_form(r * (wk - wj))


def fair_scale(lazy: str = "none") -> sp.Expr:
    """The decay scale that makes the ε → 0 margin the same for every row: ρ √α/δ (up to a constant).

    >>> [sp.simplify(deterministic_margin(z).subs(c, fair_scale(z))) for z in ("none", "decay", "moments")]
    [2*r/lambda, 2*r/lambda, 2*r/lambda]
    """
    _check(lazy)
    rho = sp.sqrt(B * P / D)
    return {"none": rho, "decay": rho / a, "moments": rho / sp.sqrt(a)}[lazy]


def margin_equation(K, lazy: str = "none") -> sp.Expr:
    """ε ≥ 0: r(w_k(m) − w_j(m)) − m, zero at the equilibrium margin, with p_k = eᵐ/(eᵐ + K − 1) and each
    weight solved from its own (linear in w) stationarity."""
    _check(lazy)
    stat = variant_stationarity(lazy)
    pk = sp.exp(m) / (sp.exp(m) + K - 1)

    def weight(qv, pv):
        sol = sp.solve(stat.subs({q: qv, p: pv}), w)
        if len(sol) != 1:  # pragma: no cover
            raise AssertionError(sol)
        return sol[0]

    return r * (weight(1, pk) - weight(0, (1 - pk) / (K - 1))) - m


def lazy_moments_index_limits() -> tuple[sp.Expr, sp.Expr]:
    """ρ²/a (the squared ε → 0 margin of LazyAdam in units of 2r/(λc)) at P → 0 and at P → 1.

    >>> lazy_moments_index_limits()
    (1, 1)
    """
    ratio = (B * P / (1 + (B - 1) * P)) / presence()
    return sp.limit(ratio, P, 0, "+"), sp.simplify(ratio.subs(P, 1))
