"""T10, the AdamW equilibrium of the factored bigram LM: per-coordinate gradient moments in sympy.

One sample (x, y), y ~ q(·|x); logits z = r W e_x (W: V × d, e_x ∈ R^d), p = softmax(z). The
per-sample gradient of CE(y, z) is
    ∂/∂W_jk = r (p_j − 1{y=j}) e_k,     ∂/∂e_k = r Σ_j (p_j − 1{y=j}) W_jk = r (Wᵀp − W_y)_k.
Averaging over y given x gives the conditional moments below; averaging over x with weights
P(x) gives those of :func:`imbalance.theory.adamw_shared.sample_moments`. A minibatch mean of B
i.i.d. samples has E[g²] = E[G²]/B + (1 − 1/B) E[G]².
"""

from __future__ import annotations

import sympy as sp

__all__ = ["factored_symbols", "per_sample_gradients", "conditional_moments", "closed_form_moments",
           "tied_conditional_moments", "tied_closed_form_moments", "minibatch_second_moment",
           "full_batch_ratio_limit"]

r, lam = sp.symbols("r lambda", positive=True)
B = sp.Symbol("B", integer=True, positive=True)
G, G2 = sp.symbols("G G2", real=True)  # E[G], E[G²] of one sample


def factored_symbols(V: int, d: int):
    """(W (V × d), e (d), q (V), with q_V = 1 − Σ_{j<V} q_j) as sympy matrices."""
    W = sp.Matrix(V, d, lambda j, k: sp.Symbol(f"W_{j}{k}", real=True))
    e = sp.Matrix(d, 1, lambda k, _: sp.Symbol(f"e_{k}", real=True))
    qs = [sp.Symbol(f"q_{j}", positive=True) for j in range(V - 1)]
    q = sp.Matrix(qs + [1 - sum(qs)])
    return W, e, q


def _probs(W, e):
    z = r * W * e  # (V, 1)
    den = sum(sp.exp(zi) for zi in z)
    return sp.Matrix([sp.exp(zi) / den for zi in z])


def per_sample_gradients(W, e):
    """[(∂CE/∂W (V × d), ∂CE/∂e (d × 1)) for y = 0 … V − 1], by differentiating the loss.

    >>> W, e, q = factored_symbols(2, 1)
    >>> gW, ge = per_sample_gradients(W, e)[0]
    >>> p = _probs(W, e)
    >>> sp.simplify(gW[1, 0] - r * p[1] * e[0])
    0
    """
    z = r * W * e
    lse = sp.log(sum(sp.exp(zi) for zi in z))
    out = []
    for y in range(W.shape[0]):
        loss = lse - z[y]
        gW = sp.Matrix(W.shape[0], W.shape[1], lambda j, k, f=loss: sp.diff(f, W[j, k]))
        ge = sp.Matrix(e.shape[0], 1, lambda k, _, f=loss: sp.diff(f, e[k]))
        out.append((gW, ge))
    return out


def conditional_moments(W, e, q):
    """(E[G_W|x], E[G_W²|x], E[G_e|x], E[G_e²|x]) by summing the per-sample gradients over y."""
    grads = per_sample_gradients(W, e)
    mW = sum((q[y] * g for y, (g, _) in enumerate(grads)), sp.zeros(*W.shape))
    sW = sum((q[y] * g.applyfunc(lambda a: a**2) for y, (g, _) in enumerate(grads)), sp.zeros(*W.shape))
    me = sum((q[y] * g for y, (_, g) in enumerate(grads)), sp.zeros(*e.shape))
    se = sum((q[y] * g.applyfunc(lambda a: a**2) for y, (_, g) in enumerate(grads)), sp.zeros(*e.shape))
    return mW, sW, me, se


def closed_form_moments(W, e, q):
    """The closed forms used by the numeric solver, in terms of p = softmax(r W e):

        E[G_W|x]_jk  = r (p_j − q_j) e_k
        E[G_W²|x]_jk = r² e_k² ((p_j − q_j)² + q_j (1 − q_j))
        E[G_e|x]_k   = r ((p − q)ᵀ W)_k
        E[G_e²|x]_k  = r² [((p − q)ᵀ W)_k² + Σ_j q_j W_jk² − (qᵀ W)_k²]

    >>> W, e, q = factored_symbols(3, 2)
    >>> exact, closed = conditional_moments(W, e, q), closed_form_moments(W, e, q)
    >>> all(sp.simplify(a - b) == sp.zeros(*a.shape) for a, b in zip(exact, closed))
    True
    """
    p = _probs(W, e)
    V, d = W.shape
    mW = sp.Matrix(V, d, lambda j, k: r * (p[j] - q[j]) * e[k])
    sW = sp.Matrix(V, d, lambda j, k: r**2 * e[k] ** 2 * ((p[j] - q[j]) ** 2 + q[j] * (1 - q[j])))
    u = W.T * (p - q)  # (d, 1)
    qW = W.T * q
    qW2 = W.applyfunc(lambda a: a**2).T * q
    me = r * u
    se = sp.Matrix(d, 1, lambda k, _: r**2 * (u[k] ** 2 + qW2[k] - qW[k] ** 2))
    return mW, sW, me, se


def tied_conditional_moments(E, x: int, q):
    """Tied model (W = E, V × d; context x's embedding is row x): (E[G|x], E[G²|x]) over y ~ q, by
    differentiating CE(y, r E E_x) with respect to every entry of E (both uses of row x)."""
    z = r * E * E[x, :].T  # (V, 1)
    lse = sp.log(sum(sp.exp(zi) for zi in z))
    mean, sq = sp.zeros(*E.shape), sp.zeros(*E.shape)
    for y in range(E.shape[0]):
        g = sp.Matrix(E.shape[0], E.shape[1], lambda j, k, f=lse - z[y]: sp.diff(f, E[j, k]))
        mean += q[y] * g
        sq += q[y] * g.applyfunc(lambda a: a**2)
    return mean, sq


def tied_closed_form_moments(E, x: int, q):
    """The tied closed forms of :func:`imbalance.theory.adamw_shared.tied_sample_moments`, given x:
    the untied moments at W = E (output part on every row j, input part on row x) plus, on row x,
    the cross term 2 r² E_xk [p_x((Eᵀp)_k − (Eᵀq)_k) − q_x((Eᵀp)_k − E_xk)].

    >>> E, _, q = factored_symbols(2, 1)
    >>> exact, closed = tied_conditional_moments(E, 0, q), tied_closed_form_moments(E, 0, q)
    >>> all(sp.simplify(a - b) == sp.zeros(*a.shape) for a, b in zip(exact, closed))
    True
    """
    e = E[x, :].T  # (d, 1)
    mW, sW, me, se = closed_form_moments(E, e, q)
    p = _probs(E, e)
    Ep, Eq = E.T * p, E.T * q  # (d, 1)
    mean, sq = mW.copy(), sW.copy()
    for k in range(E.shape[1]):
        mean[x, k] += me[k]
        sq[x, k] += se[k] + 2 * r**2 * e[k] * (p[x] * (Ep[k] - Eq[k]) - q[x] * (Ep[k] - e[k]))
    return mean, sq


def minibatch_second_moment(n: int | None = None) -> sp.Expr:
    """E[g²] of the mean of B i.i.d. copies of G, from E[(Σ G_i)²] = B E[G²] + B(B − 1) E[G]².

    With ``n`` it expands the square of n explicit i.i.d. terms instead (a check of the rule).

    >>> minibatch_second_moment()
    G**2 + (-G**2 + G2)/B
    >>> sp.simplify(minibatch_second_moment(3) - minibatch_second_moment().subs(B, 3))
    0
    """
    if n is None:
        return sp.expand(G**2) + (G2 - G**2) / B
    xs = sp.symbols(f"x0:{n}", real=True)
    sq = sp.expand(sum(xs) ** 2)
    # E[x_i x_j] = G2 if i = j else G², by independence and identical law
    val = sum(c * (G2 if len(m.free_symbols) == 1 and sp.degree(m, m.free_symbols.pop()) == 2 else G**2)
              for m, c in sq.as_coefficients_dict().items())
    return sp.expand(val / n**2)


def full_batch_ratio_limit():
    """E[g]/√E[g²] as B → ∞: sign(E[G]) (so |θ| = 1/λ wherever E[G] ≠ 0: the ℓ∞ box of
    Xie & Li 2024, arXiv 2404.04454).

    >>> full_batch_ratio_limit()
    (1, -1)
    """
    a, s2 = sp.symbols("a s2", positive=True)
    def ratio(mean):
        return mean / sp.sqrt(minibatch_second_moment().subs({G: mean, G2: mean**2 + s2}))

    return sp.limit(ratio(a), B, sp.oo), sp.limit(ratio(-a), B, sp.oo)
