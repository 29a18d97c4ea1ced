"""T2, the bigram model with one-hot contexts under L2 decay, derived with sympy.

Per context x (probability P, input r·e_x, output column w ∈ R^K, next-token law q):
    L_x(w) = P Σ_j −q_j log softmax(r w)_j + (λ/2)‖w‖².
The contexts decouple, so everything here is about one column.
"""

from __future__ import annotations

import sympy as sp

from ._common import check_size, softmax

__all__ = [
    "bigram_symbols", "bigram_context_objective", "bigram_fixed_point", "deterministic_margin_equation",
    "deterministic_loss", "learned_threshold", "large_kappa_margin",
]

P, r, lam = sp.symbols("P r lambda", positive=True)
kappa = sp.Symbol("kappa", positive=True)
m = sp.Symbol("m", real=True)


def bigram_symbols(K: int):
    """(q_1..q_K nonnegative, w_1..w_K real, P, r, λ positive)."""
    K = check_size(K)
    q = sp.symbols(f"q1:{K + 1}", nonnegative=True)
    w = sp.symbols(f"w1:{K + 1}", real=True)
    return q, w, P, r, lam


def bigram_context_objective(K: int) -> sp.Expr:
    """P Σ_j −q_j log softmax(r w)_j + (λ/2)‖w‖² for one context."""
    K = check_size(K)
    q, w, *_ = bigram_symbols(K)
    p = softmax([r * wj for wj in w])
    return -P * sp.Add(*[qj * sp.log(pj) for qj, pj in zip(q, p)]) + lam / 2 * sp.Add(*[wj**2 for wj in w])


def bigram_fixed_point(K: int) -> dict:
    """Stationarity of one context rewritten as the fixed point z = κ (q − p), κ = P r²/λ.

    ∂L/∂w_j = P r ((Σq) p_j − q_j) + λ w_j; with Σq = 1 and z = r w this is
    z_j = κ (q_j − p_j), i.e. p = softmax(κ (q − p)). Returns {"gradient": [...],
    "kappa": P r²/λ, "residual": [z_j − κ(q_j − p_j) at the stationary w]} whose
    residual simplifies to 0.

    >>> bigram_fixed_point(3)["kappa"]
    P*r**2/lambda
    >>> bigram_fixed_point(3)["residual"]
    [0, 0, 0]
    """
    K = check_size(K)
    q, w, *_ = bigram_symbols(K)
    L = bigram_context_objective(K)
    p = softmax([r * wj for wj in w])
    grad = [sp.diff(L, wj) for wj in w]
    for j, g in enumerate(grad):
        claimed = P * r * (sp.Add(*q) * p[j] - q[j]) + lam * w[j]
        if sp.simplify(g - claimed) != 0:  # pragma: no cover - guards the derivation
            raise AssertionError(f"gradient component {j} is not P r((Σq)p_j − q_j) + λ w_j")
    sub = {q[-1]: 1 - sp.Add(*q[:-1])}
    # with p held at its value p_j, the gradient is affine in w_j: solve it for w_j
    pj = sp.symbols(f"p1:{K + 1}", positive=True)
    grad_p = [(P * r * (sp.Add(*q) * pj[j] - q[j]) + lam * w[j]).subs(sub) for j in range(K)]
    w_star = [sp.solve(g, w[j])[0] for j, g in enumerate(grad_p)]
    k = P * r**2 / lam
    resid = [sp.simplify(r * ws - k * (qj - pp).subs(sub)) for ws, qj, pp in zip(w_star, q, pj)]
    return {"gradient": grad, "kappa": k, "w": w_star, "residual": resid}


def deterministic_margin_equation(K: int) -> dict:
    """Context k always followed by token k (q = e_k), κ = π r²/λ.

    By symmetry z_j is the same for j ≠ k; with a = p_k the fixed point gives
    m = z_k − z_j = κ K (1 − a)/(K − 1) and a = eᵐ/(eᵐ + K − 1), hence
    m (eᵐ + K − 1) = κ' (K − 1), κ' = K κ/(K − 1). Returns {"equation": lhs − rhs,
    "kappa_prime": κ', "check": difference from the derived form (0)}.

    >>> deterministic_margin_equation(4)["equation"]
    -4*kappa + m*exp(m) + 3*m
    """
    K = check_size(K, maximum=10**6)
    a = sp.exp(m) / (sp.exp(m) + K - 1)
    # z_k = κ(1 − a), z_j = κ(0 − (1 − a)/(K − 1))  ⇒  m = z_k − z_j
    m_from_fixed_point = kappa * (1 - a) - kappa * (0 - (1 - a) / (K - 1))
    kp = K * kappa / (K - 1)
    eq = m * (sp.exp(m) + K - 1) - kp * (K - 1)
    check = sp.simplify((m - m_from_fixed_point) * (sp.exp(m) + K - 1) - eq)
    return {"equation": sp.expand(eq), "kappa_prime": kp, "check": check}


def deterministic_loss(K: int) -> sp.Expr:
    """ℓ = −log p_k = log(1 + (K − 1) e^{−m}).

    >>> deterministic_loss(5)
    log(1 + 4*exp(-m))
    """
    K = check_size(K, maximum=10**6)
    a = sp.exp(m) / (sp.exp(m) + K - 1)
    out = sp.log(1 + (K - 1) * sp.exp(-m))
    if sp.simplify(1 / a - sp.exp(out)) != 0:  # pragma: no cover - −log a = log(1/a)
        raise AssertionError("loss is not log(1 + (K − 1) e^{-m})")
    return out


def learned_threshold() -> sp.Expr:
    """π* with p_k ≥ ½ ⇔ π_k ≥ π*: solve the margin equation at m = log(K − 1) for π.

    m(eᵐ + K − 1) is increasing in m, and p_k = ½ ⇔ eᵐ = K − 1.

    >>> learned_threshold()
    2*lambda*(K - 1)*log(K - 1)/(K*r**2)
    """
    K = sp.Symbol("K", integer=True, positive=True)
    pi = sp.Symbol("pi", positive=True)
    mm = sp.log(K - 1)
    kap = pi * r**2 / lam
    eq = mm * (sp.exp(mm) + K - 1) - K * kap
    sol = sp.solve(eq, pi)
    if len(sol) != 1:  # pragma: no cover
        raise AssertionError(sol)
    return sp.factor(sp.simplify(sol[0]))


def large_kappa_margin(K: int) -> dict:
    """Large-κ asymptotics: with c = K κ, m = W(c) − (K − 1) W(c)²/(c (1 + W(c))) + o(·).

    The leading term solves m eᵐ = c (the K − 1 term dropped); the correction is
    one Newton step of m eᵐ + (K − 1) m − c from W(c), using e^{W(c)} = c/W(c).
    ℓ ≈ (K − 1) e^{−m} ≈ (K − 1) W(c)/c, i.e. ℓ ~ (λ/π) log(π/λ) up to constants.
    """
    K = check_size(K, maximum=10**6)
    c = K * kappa
    W = sp.LambertW(c)
    f = m * sp.exp(m) + (K - 1) * m - c
    newton = W - (f / sp.diff(f, m)).subs(m, W)
    newton = sp.simplify(newton.subs(sp.exp(W), c / W))
    leading_correction = W - (K - 1) * W**2 / (c * (1 + W))
    return {"leading": W, "newton": newton, "two_term": leading_correction, "c": c,
            "loss_leading": (K - 1) * W / c}
