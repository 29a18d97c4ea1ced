"""Learning curves of the deterministic bigram (context k → token k), derived with sympy.

One context with probability P (= π_k), input r e_k, K tokens, output column w, started at
w = 0. By symmetry the column keeps two values: a (the target) and b (each of the K − 1
others), and the margin is m = r(a − b). Two flows (η the learning rate, t in steps):

* gradient descent on P CE + (λ/2)‖w‖²:  dm/dt = η (P r² K/(eᵐ + K − 1) − λ m);
  without decay it integrates to t(m) = (eᵐ − 1 + (K − 1) m)/(η P r² K), so the time to
  learn a token (p ≥ ½, m = log(K − 1)) is ∝ 1/(η P): rare tokens are learned late
  (Kunstner et al. 2024, arXiv 2402.19449).
* the mean-field AdamW update E[g]/√E[g²] (ε = 0, no averaging) with decoupled decay: every
  coordinate moves at speed ρ = √(BP/(1 + (B − 1)P)) (T3), so a_t = ρ(1 − (1 − ηλ)^t)/λ
  exactly in discrete steps and m_t = 2 r ρ (1 − (1 − ηλ)^t)/λ: the margin reaches the T3
  equilibrium 2rρ/λ on the timescale 1/(ηλ) (Wang & Aitchison 2024, arXiv 2405.13698), and
  the time to learn is ≈ log(K − 1)/(2 r ρ η): frequency-free once BP ≳ 1, ∝ 1/√(BP) below.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

__all__ = ["gd_margin_ode", "gd_time_to_margin", "gd_time_to_learn", "sign_margin_discrete",
           "sign_time_to_learn", "gd_relaxation_rate"]

P, r, lam, eta, B = sp.symbols("P r lambda eta B", positive=True)
K = sp.Symbol("K", integer=True, positive=True)
m = sp.Symbol("m", nonnegative=True)
t = sp.Symbol("t", nonnegative=True)
a, b = sp.symbols("a b", real=True)


@cache  # a derivation without arguments: derive once
def gd_margin_ode() -> dict:
    """The gradient-descent flow of (a, b) and the margin ODE it implies.

    F(a, b) = −P log(e^{ra}/(e^{ra} + (K−1)e^{rb})) + (λ/2)(a² + (K−1)b²) is the objective on
    the symmetric column; a single other coordinate's gradient is ∂F/∂b/(K − 1).

    >>> out = gd_margin_ode()
    >>> out["dm_dt"]
    eta*(K*P*r**2/(K + exp(m) - 1) - lambda*m)
    >>> out["check"], out["sum_rate"]
    (0, -eta*lambda)
    """
    F = -P * sp.log(sp.exp(r * a) / (sp.exp(r * a) + (K - 1) * sp.exp(r * b))) + lam / 2 * (a**2 + (K - 1) * b**2)
    da = -eta * sp.diff(F, a)
    db = -eta * sp.diff(F, b) / (K - 1)
    # a + (K−1) b obeys d/dt = −ηλ (·), so from w = 0 it stays 0: b = −a/(K − 1), m = r a K/(K − 1)
    sum_rate = sp.simplify((da + (K - 1) * db) / (a + (K - 1) * b))
    on_orbit = {a: m * (K - 1) / (r * K), b: -m / (r * K)}
    dm = sp.simplify((r * (da - db)).subs(on_orbit))
    stated = eta * (K * P * r**2 / (K + sp.exp(m) - 1) - lam * m)
    return {"dm_dt": stated, "derived": dm, "check": sp.simplify(dm - stated), "sum_rate": sum_rate}


@cache  # a derivation without arguments: derive once
def gd_time_to_margin() -> sp.Expr:
    """Steps (continuous time) for gradient descent without decay to reach margin m from 0.

    >>> gd_time_to_margin()
    (m*(K - 1) + exp(m) - 1)/(K*P*eta*r**2)
    """
    rate = gd_margin_ode()["dm_dt"].subs(lam, 0)
    mm = sp.Symbol("mm", nonnegative=True)
    return sp.simplify(sp.integrate(1 / rate.subs(m, mm), (mm, 0, m)))


@cache  # a derivation without arguments: derive once
def gd_time_to_learn() -> sp.Expr:
    """Time for p_k(k) to reach ½ (m = log(K − 1)) under gradient descent, λ = 0: ∝ 1/(η P).

    >>> sp.factor(gd_time_to_learn())
    (K*log(K - 1) + K - log(K - 1) - 2)/(K*P*eta*r**2)
    """
    return sp.simplify(gd_time_to_margin().subs(m, sp.log(K - 1)))


@cache  # a derivation without arguments: derive once
def sign_margin_discrete() -> dict:
    """Discrete mean-field AdamW (β = 0, ε = 0) from w = 0: a_{t+1} = (1 − ηλ) a_t + ηρ, solved.

    >>> out = sign_margin_discrete()
    >>> out["margin"]
    2*r*rho*(1 - (-eta*lambda + 1)**t)/lambda
    >>> out["check"], out["rho_check"]
    (0, 0)
    """
    rho = sp.Symbol("rho", positive=True)
    n = sp.Symbol("n", integer=True, nonnegative=True)
    seq = sp.Function("a")
    sol = sp.rsolve(seq(n + 1) - (1 - eta * lam) * seq(n) - eta * rho, seq(n), {seq(0): 0})
    margin = 2 * r * rho * (1 - (1 - eta * lam) ** t) / lam
    derived = 2 * r * sol.subs(n, t)  # b = −a by symmetry of the ±ρ updates
    # the update E[g]/√E[g²] of a deterministic context, sign(μ)·P/√(P(1−P)/B + P²), is ±ρ
    mu = sp.Symbol("mu", positive=True)
    upd = P * r * mu / sp.sqrt(r**2 * (P * (1 - P) * mu**2 + B * P**2 * mu**2) / B)
    rho_check = sp.simplify(upd**2 - B * P / (1 + (B - 1) * P))
    return {"margin": margin, "check": sp.simplify(derived - margin), "rho": sp.sqrt(B * P / (1 + (B - 1) * P)),
            "rho_check": rho_check}


@cache  # a derivation without arguments: derive once
def sign_time_to_learn() -> dict:
    """Steps for the mean-field AdamW margin (continuous in t) to reach log(K − 1), and its λ → 0 limit.

    >>> out = sign_time_to_learn()
    >>> out["lam_to_0"]
    log(K - 1)/(2*eta*r*rho)
    """
    rho = sp.Symbol("rho", positive=True)
    mt = 2 * r * rho * (1 - sp.exp(-eta * lam * t)) / lam  # the continuous-time margin
    sol = sp.solve(sp.Eq(mt, sp.log(K - 1)), t)
    return {"time": sol[0], "lam_to_0": sp.limit(sol[0], lam, 0)}


@cache  # a derivation without arguments: derive once
def gd_relaxation_rate() -> sp.Expr:
    """Rate (per step) at which gradient descent's margin approaches its equilibrium m*:
    −∂(dm/dt)/∂m at m*, ≥ ηλ (the decay alone) — slower for rare tokens only through e^{m*}.

    >>> gd_relaxation_rate()
    K*P*eta*r**2*exp(m)/(K + exp(m) - 1)**2 + eta*lambda
    """
    return sp.simplify(-sp.diff(gd_margin_ode()["dm_dt"], m))
