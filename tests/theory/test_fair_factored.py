"""Row-scaled embedding decay in the factored bigram (L2): the nuclear-norm reduction against a generic
optimiser (scipy L-BFGS) on the raw factored objective in (W, E)."""

import itertools

import numpy as np
import pytest
import scipy.optimize

from imbalance.theory.fair_factored import factored_row_scaled_equilibrium


def _raw_objective(theta, C, lw, le, c, d):
    n, V = C.shape
    W, E = theta[: V * d].reshape(V, d), theta[V * d:].reshape(d, n)
    Z = (W @ E).T                                                        # (n, V)
    m = Z.max(1, keepdims=True)
    logp = Z - m - np.log(np.exp(Z - m).sum(1, keepdims=True))           # (n, V)
    P = C / C.sum()
    f = -(P * logp).sum() + 0.5 * lw * (W ** 2).sum() + 0.5 * le * (c * (E ** 2).sum(0)).sum()
    G = -(P - P.sum(1, keepdims=True) * np.exp(logp))                    # (n, V) ∂f/∂Z
    gW = G.T @ E.T + lw * W                                              # (V, d)
    gE = W.T @ G.T + le * c * E                                          # (d, n)
    return f, np.concatenate([gW.ravel(), gE.ravel()])


def test_row_scaled_factored_optimum_equals_direct_minimisation():
    """The reduction is exact: the certified nuclear-norm optimum (relative gap ≤ 1e-9) equals the best of
    several L-BFGS runs on the raw non-convex objective (width = n, so no rank limit) to 1e-7 relative
    (the L-BFGS stopping tolerance), and no L-BFGS run goes below it."""
    rng = np.random.default_rng(0)
    n = V = 6
    C = rng.integers(0, 5, (n, V)) + np.diag(np.arange(20, 20 - n, -1) * 3)   # every context observed
    lw, le = 0.02, 0.05
    c = np.array([1.0, 0.5, 0.2, 0.1, 0.05, 0.02])                         # far from uniform
    sol = factored_row_scaled_equilibrium(C, lw, le, c)
    assert sol.rel_gap <= 1e-9
    best = np.inf
    for seed in range(4):
        x0 = np.random.default_rng(seed).normal(0, 0.5, V * n + n * n)
        res = scipy.optimize.minimize(_raw_objective, x0, args=(C, lw, le, c, n), jac=True, method="L-BFGS-B",
                                      options=dict(maxiter=20000, ftol=1e-15, gtol=1e-10))
        best = min(best, res.fun)
    assert best >= sol.objective * (1 - 1e-9)
    assert best == pytest.approx(sol.objective, rel=1e-7)


def test_bad_decay_scale():
    with pytest.raises(ValueError, match="decay_scale"):
        factored_row_scaled_equilibrium(np.eye(3) + 1, 0.1, 0.1, [1.0, 0.0, 1.0])


# --- under AdamW: FairAdamW variants in the factored bigram ------------------------------------------------

COUNTS = np.array([[6.0, 2, 1, 0], [1, 4, 0, 1], [0, 1, 3, 1], [2, 0, 0, 1]])
VARIANTS = [dict(), dict(decay_scale=np.array([1.0, 0.7, 0.5, 0.3])), dict(lazy="decay"), dict(lazy="moments"),
            dict(coupled=True), dict(lazy="decay", decay_scale=np.array([0.4, 1.0, 0.6, 0.8]))]


def _batch_moments(theta, counts, B, V, d):
    """Exact law of the minibatch gradient by enumerating every ordered batch of B pairs (numpy): E[g],
    E[g²], the probability that each gradient row is non-zero, and E[g | row non-zero], E[g² | row non-zero]."""
    W, E = theta[:V * d].reshape(V, d), theta[V * d:].reshape(-1, d)
    J = counts / counts.sum()
    pairs = list(zip(*np.nonzero(J)))
    grads = []
    for x, y in pairs:
        z = W @ E[x]
        p = np.exp(z - z.max())
        p /= p.sum()
        dz = p - np.eye(V)[y]
        gE = np.zeros_like(E)
        gE[x] = W.T @ dz
        grads.append(np.concatenate([np.outer(dz, E[x]).ravel(), gE.ravel()]))
    grads, probs = np.array(grads), np.array([J[x, y] for x, y in pairs])
    m, s, seen, m_seen, s_seen = (np.zeros(theta.size) for _ in range(5))
    for batch in itertools.product(range(len(pairs)), repeat=B):
        w = np.prod(probs[list(batch)])
        g = grads[list(batch)].mean(0)
        rows = np.repeat((np.abs(g.reshape(-1, d)) > 0).any(1), d)  # the FairAdamW "seen" test, per row
        m += w * g
        s += w * g * g
        seen += w * rows
        m_seen += w * rows * g
        s_seen += w * rows * g * g
    with np.errstate(invalid="ignore", divide="ignore"):
        return m, s, seen, m_seen / seen, s_seen / seen


def _fair_drift(theta, counts, lam, B, eps, V, d, decay_scale=None, lazy="none", coupled=False):
    """The expected FairAdamW step per unit lr with the moments at their means over the steps that update
    them, written from the optimizer's definition with batch statistics enumerated."""
    m, s, seen, m_seen, s_seen = _batch_moments(theta, counts, B, V, d)
    c = np.ones(V) if decay_scale is None else decay_scale
    c = np.concatenate([np.repeat(c, d), np.repeat(c, d)])  # one scale for W rows and E rows (C = V)
    if lazy == "moments":
        return np.where(seen > 0, seen * (m_seen / (np.sqrt(s_seen) + eps) + lam * c * theta), 0.0)
    if coupled:
        nW = V * d
        s = np.concatenate([np.tile(s[:nW].reshape(V, d).mean(0), V), np.tile(s[nW:].reshape(-1, d).mean(0), V)])
    decay = lam * c * (seen if lazy == "decay" else 1.0)
    return m / (np.sqrt(s) + eps) + decay * theta


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}" for k in v) or "adamw")
def test_fair_adamw_equilibrium_zeroes_the_enumerated_expected_step(variant):
    """The returned point is a zero of the expected FairAdamW update built independently: every ordered
    batch of B = 3 pairs enumerated, presence of a row read off its batch gradient (as the optimizer does),
    lazy-moment statistics conditioned on presence by enumeration (no closed-form moments or presence law).
    The certificate (max|F| < 1e-9) and the enumerated drift (< 1e-8, summation order) agree."""
    from imbalance.theory.fair_factored import factored_fair_adamw_equilibrium

    lam, B, eps, d = 0.5, 3, 1e-8, 2
    rng = np.random.default_rng(0)
    init = (0.3 * rng.normal(size=(4, d)), 0.3 * rng.normal(size=(4, d)))
    eq = factored_fair_adamw_equilibrium(COUNTS, lam, init=init, batch_size=B, eps=eps, **variant)
    assert eq.residual < 1e-9
    theta = np.concatenate([eq.W.ravel(), eq.E.T.ravel()])
    drift = _fair_drift(theta, COUNTS, lam, B, eps, 4, d, **variant)
    assert np.abs(drift).max() < 1e-8
    if variant:  # the variant moved the equilibrium: plain AdamW's point is not a zero of this drift
        plain = factored_fair_adamw_equilibrium(COUNTS, lam, init=init, batch_size=B, eps=eps)
        theta0 = np.concatenate([plain.W.ravel(), plain.E.T.ravel()])
        assert np.abs(_fair_drift(theta0, COUNTS, lam, B, eps, 4, d, **variant)).max() > 1e-3


@pytest.mark.parametrize("kw, name", [(dict(decay_scale=np.ones(3)), "decay_scale"),
                                      (dict(decay_scale=-np.ones(4)), "decay_scale"),
                                      (dict(lazy="sometimes"), "lazy"), (dict(coupled=1), "coupled"),
                                      (dict(coupled=True, lazy="moments"), "lazy"), (dict(batch_size=0), "batch_size")])
def test_fair_adamw_bad_input_names_the_parameter(kw, name):
    from imbalance.theory.fair_factored import factored_fair_adamw_equilibrium

    args = {"init": (np.zeros((4, 2)), np.zeros((4, 2))), "batch_size": 4, **kw}
    with pytest.raises(ValueError, match=name):
        factored_fair_adamw_equilibrium(COUNTS, 0.5, **args)
