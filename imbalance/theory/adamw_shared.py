"""AdamW equilibrium of the factored bigram LM and the UFM, predicted without training (T10).

Model: logits z_x = r W e_x, W (V × d) unembeddings, E (C × d) context embeddings as rows,
both decayed by AdamW (decoupled decay λ). With minibatches of B i.i.d. pairs
(x, y) ~ P(x) q(y|x), the per-coordinate stationarity of T3 (Loshchilov & Hutter 2019
update, means in place of the exponential averages) reads

    F(θ) = E[g] / (√E[g²] + ε) + λ θ = 0,   E[g²] = E[G²]/B + (1 − 1/B) E[G]²,

with G one sample's gradient. For the factored model the moments are finite sums
(proofs/T10_adamw_shared.md):

    E[G_W]  = r Dᵀ E,                 D_xv = P(x)(p_v(x) − q_v(x))
    E[G_W²] = r² Aᵀ (E ∘ E),          A_xv = P(x)((p_v − q_v)² + q_v(1 − q_v))
    E[G_E]  = r P(x) (p_x − q_x)ᵀ W
    E[G_E²] = r² P(x) [((p_x − q_x)ᵀ W)² + q_xᵀ(W ∘ W) − (q_xᵀ W)²]

Tied (W = E, square counts, one matrix decayed once): a row's gradient is the sum of its output
and input parts, so E[G] = E[G_W] + E[G_E] and E[G²] = E[G_W²] + E[G_E²] plus the cross term
2 r² P(j) E_jk [p_j((Eᵀp)_k − (Eᵀq)_k) − q_j((Eᵀp)_k − E_jk)] (p, q after context j), see
:func:`tied_sample_moments`.

The system is not convex and has many solutions (sign flips and permutations of the d
columns at least). The one training reaches is selected by the small-learning-rate
mean-field flow θ̇ = −F(θ) from the training initialisation: Euler steps over the escape from
the initialisation, then pseudo-transient continuation (Kelley & Keyes 1998, SIAM J. Numer.
Anal. 35), i.e. linearly implicit Euler steps whose pseudo time step grows into Newton's method
(or, as a reference, Euler steps throughout and a root polish). Full batch
(B = ∞) and ε → 0 its fixed points are KKT points of min L(θ) s.t. ‖θ‖_∞ ≤ 1/λ (Xie & Li 2024,
"Implicit Bias of AdamW: ℓ∞ Norm Constrained Optimization", ICML, arXiv 2404.04454).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from .._validate import as_count_matrix, as_distribution, as_lams, as_nonnegative, as_positive, as_positive_int
from ._pseudo_transient import pseudo_transient

__all__ = ["SharedAdamWEquilibrium", "UncertifiedWarning", "BigramLaw", "bigram_law", "sample_moments", "stationarity",
           "batch_second_moment", "mean_field_adamw_path",
           "tied_sample_moments", "tied_stationarity",
           "factored_bigram_adamw_equilibrium", "ufm_adamw_equilibrium", "ufm_counts"]

RANK_RTOL = 1e-6  # singular values below RANK_RTOL·σ₁ are counted as zero in ``rank``
FALLBACK_RESIDUAL = 1e-2  # continuation that ends with max|F| above this falls back to the flow …
FALLBACK_SIZE = 20_000  # … on systems of at most this many unknowns (beyond, the Euler flow is impractical)


class UncertifiedWarning(RuntimeWarning):
    """The AdamW equilibrium solver stopped with max|F| ≥ 10·``tol`` at some λ: the result is where it
    stopped, not a certified fixed point (its ``residual`` says how far). Code that reports the residual
    itself can silence it with ``warnings.simplefilter("ignore", UncertifiedWarning)``."""


@dataclass(frozen=True)
class BigramLaw:
    """The data law of a counts matrix, on its seen contexts (P(x) > 0).

    ``P`` (C,) context law; ``seen`` indices of contexts with P > 0; ``rows``, ``cols``,
    ``joint`` the observed pairs (row index into ``seen``) and J(x, v) = P(x) q(v|x);
    ``Q`` (len(seen) × V) CSR of q(·|x); ``pi`` (V,) target marginal."""

    P: np.ndarray
    seen: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    joint: np.ndarray
    Q: sp.csr_matrix
    pi: np.ndarray

    @property
    def shape(self):
        return self.P.size, self.pi.size


def bigram_law(counts) -> BigramLaw:
    """``counts`` (contexts × vocabulary, dense or sparse) → its :class:`BigramLaw`."""
    C = as_count_matrix(counts, "counts")
    J = C / C.sum()
    P = np.asarray(J.sum(axis=1)).ravel()
    seen = np.flatnonzero(P > 0)
    Js = sp.coo_matrix(J[seen])
    Q = sp.csr_matrix(sp.diags(1.0 / P[seen]) @ J[seen])
    return BigramLaw(P=P, seen=seen, rows=Js.row, cols=Js.col, joint=Js.data, Q=Q,
                     pi=np.asarray(J.sum(axis=0)).ravel())


def _softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def sample_moments(W, E, law: BigramLaw, r: float = 1.0):
    """Per-sample gradient moments (E[G_W], E[G_W²], E[G_E], E[G_E²]), shaped like W, W, E, E.

    W (V, d), E (C, d); four dense C × V × d products and one C × V softmax on the seen contexts.
    E[G_W²] = r² (P p²)ᵀ(E ∘ E) plus a sparse correction P q (1 − 2p) on the observed pairs.
    """
    seen, rows, cols = law.seen, law.rows, law.cols
    P, Es = law.P[seen], E[seen]  # (c,), (c, d)
    p = _softmax(r * (Es @ W.T))  # (c, V)
    pv, qv = p[rows, cols], law.joint / P[rows]  # (nnz,) p and q on the observed pairs
    PE, PE2 = P[:, None] * Es, P[:, None] * Es * Es  # (c, d)
    sq_W = (p * p).T @ PE2  # (V, d)
    sq_W += sp.csr_matrix((qv * (1.0 - 2.0 * pv), (rows, cols)), shape=p.shape).T @ PE2
    sq_W *= r * r
    p[rows, cols] = pv - qv  # (c, V) now p − q
    mean_W = r * (p.T @ PE)  # (V, d) r Dᵀ E, D = P(x)(p − q)
    u = p @ W  # (c, d) (p − q)ᵀ W
    QW = law.Q @ W  # (c, d)
    var = np.maximum(law.Q @ (W * W) - QW * QW, 0.0)  # (c, d) Var_{y~q}(W_y)
    mean_E, sq_E = np.zeros_like(E), np.zeros_like(E)
    mean_E[seen] = r * P[:, None] * u
    sq_E[seen] = r * r * P[:, None] * (u * u + var)
    return mean_W, sq_W, mean_E, sq_E


def tied_sample_moments(E, law: BigramLaw, r: float = 1.0):
    """Per-sample gradient moments (E[G], E[G²]) of the tied model z_x = r E e_x, both shaped like E (V, d).

    One sample (x, y), δ = p(·|x) − 1{y}: the gradient of row j is r δ_j e_x (as an unembedding)
    plus, when j = x, r Eᵀδ (as the context embedding). The mean is the sum of the untied means at
    W = E; the square adds, on the row of the sample's own context, the cross term
    2 r² P(j) E_jk E_y[(Eᵀδ)_k δ_j | x = j] = 2 r² P(j) E_jk [p_j((Eᵀp)_k − (Eᵀq)_k) − q_j((Eᵀp)_k − E_jk)].
    """
    mW, sW, mE, sE = sample_moments(E, E, law, r)
    seen = law.seen
    idx = np.arange(seen.size)
    Es = E[seen]  # (c, d) rows of the seen contexts
    p = _softmax(r * (Es @ E.T))  # (c, V)
    p_own, q_own = p[idx, seen], np.asarray(law.Q[idx, seen]).ravel()  # (c,) p_j(j), q_j(j)
    Ep = p @ E  # (c, d) Eᵀp per context
    cross = np.zeros_like(E)
    cross[seen] = 2.0 * r * r * law.P[seen, None] * Es * (p_own[:, None] * (Ep - law.Q @ E)
                                                          - q_own[:, None] * (Ep - Es))
    return mW + mE, sW + sE + cross


def batch_second_moment(mean, sq, batch_size):
    """E[g²] of the mean g of ``batch_size`` i.i.d. sample gradients G with E[G] = ``mean`` and
    E[G²] = ``sq``: E[G²]/B + (1 − 1/B) E[G]² (B = None: full batch, E[G]²)."""
    if batch_size is None:
        return mean * mean
    return sq / batch_size + (1.0 - 1.0 / batch_size) * mean * mean


def mean_field_adamw_path(E, W, law: BigramLaw, *, r, B, lr, lams, betas, eps, log_at):
    """[(E, W)] at ``log_at[1:]`` along the mean-field AdamW recursion from (E, W) (copied).

    ``BatchedAdamW``'s recursion with the minibatch gradient replaced by its moments
    (:func:`sample_moments`): m and v are the bias-corrected exponential averages of E[g] and
    E[g²] = E[G²]/B + (1 − 1/B) E[G]² (``B`` None: full batch, E[g²] = E[g]²), the decay decoupled,
    θ ← (1 − ηλ)θ − η m̂/(√v̂ + ε), ``lams`` = (λ_E, λ_W); E (C, d), W (V, d)."""
    B = None if B is None else as_positive_int(B, "B")
    lr = as_positive(lr, "lr")
    lam_E, lam_W = (as_nonnegative(a, n) for a, n in zip(lams, ("lams[0]", "lams[1]")))
    if lr * max(lam_E, lam_W) >= 1.0:
        raise ValueError(f"lr·λ must be below 1 (the decay factor 1 − lr·λ would not be positive), got lr={lr!r}, "
                         f"lams={tuple(lams)!r}")
    _beta2(betas)
    b1, b2 = (float(b) for b in betas)
    eps = as_nonnegative(eps, "eps")
    log_at = np.asarray(log_at, dtype=np.int64)
    theta = {"E": E.copy(), "W": W.copy()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    shrink = {"E": 1.0 - lr * lam_E, "W": 1.0 - lr * lam_W}
    out, k = [], 1
    for t in range(1, int(log_at[-1]) + 1):
        mean_W, sq_W, mean_E, sq_E = sample_moments(theta["W"], theta["E"], law, r)
        for name, g, g2 in (("E", mean_E, sq_E), ("W", mean_W, sq_W)):
            m[name] *= b1
            m[name] += (1.0 - b1) * g
            v[name] *= b2
            v[name] += (1.0 - b2) * batch_second_moment(g, g2, B)
            den = np.sqrt(v[name] / (1.0 - b2 ** t)) + eps
            step = np.divide(m[name] / (1.0 - b1 ** t), den, out=np.zeros_like(den), where=den > 0)
            theta[name] *= shrink[name]
            theta[name] -= lr * step
        if k < log_at.size and t == log_at[k]:
            out.append((theta["E"].copy(), theta["W"].copy()))
            k += 1
    return out


def _normalised(mean, sq, batch_size, eps, presence=1.0, shared=False):
    """E[g]/(√(v/α) + ε) with v = E[g²] = E[G²]/B + (1 − 1/B)E[G]² (B = None: full batch, E[g]²),
    α the per-row ``presence`` of lazy moments (1: dense); ``shared``: v replaced by its mean over rows."""
    v = batch_second_moment(mean, sq, batch_size)
    if shared:
        v = np.broadcast_to(v.mean(axis=0, keepdims=True), v.shape)  # (1, d): one second moment per column
    if not np.isscalar(presence):
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(presence > 0, v / presence, 0.0)  # a row never seen has g = 0
    den = np.sqrt(v) + eps
    return np.divide(mean, den, out=np.zeros_like(mean), where=den > 0)


def stationarity(W, E, law: BigramLaw, lam, *, lam_e=None, batch_size=None, eps=1e-8, r=1.0, row_decay=None,
                 moment_presence=None, shared_second_moment=False):
    """F = (F_W, F_E): the expected AdamW update direction per coordinate, zero at equilibrium.

    Row options (``FairAdamW``, proofs/T6b_fair_optimizers.md), pairs (W rows (V,), E rows (C,)):
    ``row_decay`` multiplies λ per row (scale × probability that the decay is applied);
    ``moment_presence`` α per row (lazy moments: E[g | seen] = E[g]/α, E[g² | seen] = E[g²]/α, and the
    whole update happens in a fraction α of the steps, so the expected drift is E[g]/(√(E[g²]/α) + ε) +
    λ α θ: α also belongs in ``row_decay``); ``shared_second_moment``: E[g²] averaged over the rows of
    each matrix, per column (Coupled Adam)."""
    mW, sW, mE, sE = sample_moments(W, E, law, r)
    le = lam if lam_e is None else lam_e
    cW, cE = (1.0, 1.0) if row_decay is None else (row_decay[0][:, None], row_decay[1][:, None])
    aW, aE = (1.0, 1.0) if moment_presence is None else (moment_presence[0][:, None], moment_presence[1][:, None])
    return (_normalised(mW, sW, batch_size, eps, aW, shared_second_moment) + lam * cW * W,
            _normalised(mE, sE, batch_size, eps, aE, shared_second_moment) + le * cE * E)


def tied_stationarity(E, law: BigramLaw, lam, *, batch_size=None, eps=1e-8, r=1.0):
    """F of the tied model (one matrix E, decay λ): zero at its AdamW equilibrium."""
    mean, sq = tied_sample_moments(E, law, r)
    return _normalised(mean, sq, batch_size, eps) + lam * E


@dataclass(frozen=True)
class SharedAdamWEquilibrium:
    """AdamW equilibrium of the factored bigram LM (or the UFM); a 1-D λ path adds a leading axis.

    Fields shared with the L2 result (:class:`~imbalance.theory.FactoredBigramEquilibrium`):
    ``loss_per_token[v]`` (mean CE over the occurrences of v as target, NaN if never a target),
    ``aggregate_loss``, ``token_balanced_loss``, ``W`` (V × d), ``E`` (d × C, logits of
    context x = r W @ E[:, x]), ``singular_values`` of r W E (min(C, V), descending), ``rank``,
    ``unembedding_norms``, ``embedding_norms``. Certificate: ``residual`` = max_i |F_i| at the
    returned point (F in units of one normalised update); ``flow_time`` = ∫ dt of the mean-field
    flow before the polish (continuation: the Euler time plus the pseudo time Σ Δt, a flow time
    only while Δt is small). ``occurrences_per_window`` = B π_v/(1 − β₂), the expected number of
    batches containing v as target per β₂ window; the mean-field law needs it ≫ 1.
    """

    lam: np.ndarray | float
    lam_e: np.ndarray | float
    batch_size: int | None
    eps: float
    token_frequency: np.ndarray
    occurrences_per_window: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: np.ndarray | float
    token_balanced_loss: np.ndarray | float
    W: np.ndarray
    E: np.ndarray
    singular_values: np.ndarray
    rank: np.ndarray | int
    unembedding_norms: np.ndarray
    embedding_norms: np.ndarray
    residual: np.ndarray | float
    flow_time: np.ndarray | float
    tied: bool = False  # W = E: one matrix, one decay (``W`` and ``E.T`` are the same array)


def _flow(theta, F, *, h, t_max, tol):
    """Euler steps θ ← θ − h F(θ) (deterministic AdamW with exact moments) until max|F| < ``tol``.

    |E[g]|/√E[g²] ≤ 1, so a step moves a coordinate by at most h(1 + λ|θ|); a step too large
    for the stiff coordinates (gain ≈ √(BP)/σ, T3) makes them chatter instead of converging.
    Returns (θ, time integrated, residual)."""
    t, res = 0.0, np.inf
    for _ in range(int(np.ceil(t_max / h))):
        f = F(theta)
        res = float(np.abs(f).max())
        if res < tol:
            break
        theta = theta - h * f
        t += h
    return theta, t, res


def _polish(theta, F, method):
    """Root of F from ``theta``: MINPACK hybr (small systems) or Newton–Krylov (large)."""
    if method == "auto":
        method = "hybr" if theta.size <= 1500 else "krylov"
    opts = {"xtol": 1e-14} if method == "hybr" else {"fatol": 1e-12, "maxiter": 100}
    try:
        return scipy.optimize.root(F, theta, method=method, options=opts).x
    except (ValueError, np.linalg.LinAlgError, scipy.optimize.NoConvergence):  # pragma: no cover
        return theta


def _one(law, lam, lam_e, W0, E0, B, eps, r, solver, rows=None):
    """The equilibrium the mean-field flow reaches from (W0, E0) (W0 None: tied, θ = E):
    ((W, E), residual, flow time). ``rows``: the row options of :func:`stationarity` (a dict, None for
    plain AdamW; untied only)."""
    d = E0.shape[1]
    nW = 0 if W0 is None else W0.size
    rows = rows or {}

    def split(theta):
        E = theta[nW:].reshape(-1, d)
        return (E if W0 is None else theta[:nW].reshape(-1, d)), E

    def F(theta):
        if W0 is None:
            return tied_stationarity(split(theta)[1], law, lam, batch_size=B, eps=eps, r=r).ravel()
        fW, fE = stationarity(*split(theta), law, lam, lam_e=lam_e, batch_size=B, eps=eps, r=r, **rows)
        return np.concatenate([fW.ravel(), fE.ravel()])

    t_sel = 0.0
    if solver["select"] is not None:  # the training's own mean-field recursion chooses the basin
        lr, steps, betas = solver["select"]
        E0, W0 = mean_field_adamw_path(E0, W0, law, r=r, B=B, lr=lr, lams=(lam_e, lam), betas=betas, eps=eps,
                                       log_at=np.array([0, steps]))[-1]
        t_sel = lr * steps
        solver = dict(solver, t_select=0.0)
    theta0 = E0.ravel().copy() if W0 is None else np.concatenate([W0.ravel(), E0.ravel()])
    if solver["method"] == "continuation":
        theta, res, t = _continuation(theta0, F, solver)
        t += t_sel
        if res < FALLBACK_RESIDUAL or theta.size > FALLBACK_SIZE or not solver["fallback"]:
            return split(theta), res, t
    slow = _slowest_decays(lam, lam_e, rows.get("row_decay"))
    theta, res, t = _flow_and_polish(theta0, F, *slow, solver)  # the reference, or the fallback
    return split(theta), res, t + t_sel


def _slowest_decays(lam, lam_e, row_decay):
    """(λ_W, λ_E) times their smallest positive row multiplier: the slowest relaxation rates."""
    if row_decay is None:
        return lam, lam_e
    return tuple(a * (float(c[c > 0].min()) if (c > 0).any() else 1.0) for a, c in zip((lam, lam_e), row_decay))


def _continuation(theta, F, solver):
    """Euler flow over the escape from the initialisation (flow time ``t_select``: there the
    Jacobian ~ 1/|θ| is too stiff for large implicit steps and the basin is chosen), then
    pseudo-transient continuation from Δt = ``dt0`` to max|F| < ``tol``."""
    theta, t, _ = _flow(theta, F, h=solver["h"], t_max=solver["t_select"], tol=solver["tol"])
    out = pseudo_transient(F, theta, dt0=solver["dt0"], tol=solver["tol"], max_steps=solver["max_steps"],
                           patience=solver["patience"])
    return out.theta, out.residual, t + out.time


def _flow_and_polish(theta, F, lam, lam_e, solver):
    """Flow until max|F| < 1e-3, polish, and keep the polished root only if it is the flow's own
    limit: a root that the flow would not reach (a saddle passed nearby) lies farther than the
    flow's remaining travel, in which case the flow continues to 1e-9."""
    h, polish = solver["h"], solver["polish"]
    t_max = 60.0 / min(lam, lam_e) if solver["t_max"] is None else solver["t_max"]
    theta, t, res = _flow(theta, F, h=h, t_max=t_max, tol=1e-3)
    if polish != "none":
        root = _polish(theta, F, polish)
        travel = 10 * res / min(lam, lam_e)  # |θ − θ*| ≲ |F|/(slowest rate ≈ λ), with a margin
        if np.abs(F(root)).max() < 1e-9 and np.abs(root - theta).max() < travel:
            return root, float(np.abs(F(root)).max()), t
    theta, t2, res = _flow(theta, F, h=h, t_max=t_max - t, tol=1e-9)
    if polish != "none":
        root = _polish(theta, F, polish)
        if np.abs(F(root)).max() < res:
            theta = root
    return theta, float(np.abs(F(theta)).max()), t + t2


def _as_init(init, V, C):
    if init is None:
        raise ValueError("init must be given as (W0, E0): W0 (V, d), E0 (C, d), the training initialisation")
    try:
        W0, E0 = (np.array(a, dtype=np.float64) for a in init)
    except (TypeError, ValueError):
        raise ValueError(f"init must be a pair (W0, E0) of arrays, got init={init!r}"[:200]) from None
    if W0.ndim != 2 or E0.ndim != 2 or W0.shape[0] != V or E0.shape[0] != C or W0.shape[1] != E0.shape[1]:
        raise ValueError(f"init must be (W0 (V={V}, d), E0 (C={C}, d)), got shapes {W0.shape}, {E0.shape}")
    if not (np.isfinite(W0).all() and np.isfinite(E0).all()):
        raise ValueError("init must be finite")
    return W0, E0


def _as_tied_init(init, V):
    """The tied initialisation: one array E0 (V, d) (embedding = unembedding)."""
    if init is None:
        raise ValueError("init must be given as E0 (V, d) for tied=True, the training initialisation")
    try:
        E0 = np.array(init, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"init must be one array E0 (V, d) for tied=True, got init={init!r}"[:200]) from None
    if E0.ndim != 2 or E0.shape[0] != V:
        raise ValueError(f"init must be E0 (V={V}, d) for tied=True, got shape {E0.shape}")
    if not np.isfinite(E0).all():
        raise ValueError("init must be finite")
    return None, E0


def _solver_options(method, h, t_max, polish, t_select, dt0, tol, max_steps, patience=60, fallback=True):
    if method not in ("continuation", "flow"):
        raise ValueError(f"method must be 'continuation' or 'flow', got method={method!r}")
    if polish not in ("auto", "hybr", "krylov", "none"):
        raise ValueError(f"polish must be 'auto', 'hybr', 'krylov' or 'none', got polish={polish!r}")
    if t_max is not None:
        t_max = as_positive(t_max, "t_max")
    return dict(method=method, h=as_positive(h, "h"), t_max=t_max, polish=polish,
                t_select=as_nonnegative(t_select, "t_select"), dt0=as_positive(dt0, "dt0"),
                tol=as_positive(tol, "tol"), max_steps=as_positive_int(max_steps, "max_steps"),
                patience=as_positive_int(patience, "patience"), fallback=_as_flag(fallback, "fallback"))


def _as_select(select, lr, steps, betas, tied, row_decay, moment_presence, shared, lam_max):
    """None for select="flow"; (lr, steps, (β₁, β₂)) for select="adamw" (lr·``lam_max`` < 1)."""
    if select not in ("flow", "adamw"):
        raise ValueError(f"select must be 'flow' or 'adamw', got select={select!r}")
    if select == "flow":
        if lr is not None or steps is not None:
            raise ValueError(f"lr and steps are the training's, for select='adamw' only; got lr={lr!r}, "
                             f"steps={steps!r} with select='flow'")
        return None
    if lr is None or steps is None:
        raise ValueError(f"select='adamw' needs the training's lr and steps, got lr={lr!r}, steps={steps!r}")
    if bool(tied) or row_decay is not None or moment_presence is not None or bool(shared):
        raise ValueError("select='adamw' is implemented for the untied model without FairAdamW row options")
    b2 = _beta2(betas)  # validates both
    lr = as_positive(lr, "lr")
    if lr * lam_max >= 1.0:
        raise ValueError(f"select='adamw': lr·λ must be below 1 (AdamW's decay factor 1 − lr·λ), got lr={lr!r} "
                         f"with λ up to {lam_max:g}")
    return lr, as_positive_int(steps, "steps"), (float(betas[0]), b2)


def _as_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {name}={value!r}")
    return bool(value)


def factored_bigram_adamw_equilibrium(counts, lam, *, init=None, lam_e=None, batch_size=None, eps=1e-8,
                                      betas=(0.9, 0.999), r=1.0, method="continuation", h=0.02,
                                      t_select=1.0, dt0=0.1, tol=1e-10, max_steps=500, t_max=None,
                                      polish="auto", row_decay=None, moment_presence=None,
                                      shared_second_moment=False, patience=60, tied=False,
                                      fallback=True, select="flow", lr=None, steps=None) -> SharedAdamWEquilibrium:
    """AdamW equilibrium of the factored bigram LM z_x = r W e_x, selected from ``init``.

    ``tied=True``: W = E, one matrix (square counts) with the one decay ``lam`` (``lam_e`` must be
    None), ``init`` = E0 (V, d) (the simulator's ``FactoredBigram(tied=True)`` draws ``p["E"][0]``);
    the moments are :func:`tied_sample_moments`.

    ``counts`` (C × V); ``lam`` (λ of W, and of E unless ``lam_e``) scalar or 1-D;
    ``init`` = (W0 (V, d), E0 (C, d)), the training initialisation (the flow starts there for
    every λ; the simulator's draw for seed s is ``p = FactoredBigram(width=d, init_scale=…)
    .init(task, [torch.Generator().manual_seed(s)], torch.float64)``, ``(p["W"][0], p["E"][0])``,
    which this layer, free of torch, takes as arrays); ``batch_size`` B (None: full batch);
    ``eps`` Adam's ε; ``betas`` only enter the validity diagnostic ``occurrences_per_window``.

    ``method="continuation"``: Euler steps ``h`` of the mean-field flow for flow time
    ``t_select`` (the escape from the initialisation, where the basin is chosen), then
    pseudo-transient continuation (Kelley & Keyes 1998) from pseudo time step ``dt0`` until
    max|F| < ``tol`` or ``max_steps`` implicit steps (or ``patience`` steps without a new smallest
    max|F|); where it ends far from any equilibrium
    (max|F| ≥ ``FALLBACK_RESIDUAL``: sign-like coordinates, e.g. contexts with one successor or
    full batch, make F nearly discontinuous) it falls back to the flow if the system has at most
    ``FALLBACK_SIZE`` unknowns (V·d + C·d) and ``fallback``, and otherwise returns where it stopped. A result with
    ``residual`` ≥ ``tol`` is not a certified equilibrium; at ≥ 10·``tol`` an :class:`UncertifiedWarning`
    says so. ``method="flow"``: Euler steps ``h``
    for up to ``t_max`` (default 60/λ) and a root polish (``polish``: "auto", "hybr", "krylov"
    or "none"), the slow reference.

    ``select``: what chooses among the equilibria (★ has many stable roots when tokens share a
    representation). "flow" (default): the mean-field flow from ``init`` (for ``t_select``, or
    the whole ``method="flow"``). "adamw": the mean-field AdamW recursion itself
    (:func:`mean_field_adamw_path`) from ``init`` for the training's ``steps`` at its ``lr``, with
    ``betas``, ``batch_size`` and ``eps``, then the solver from where it ends (no escape flow);
    costs ``steps`` moment evaluations per λ. β₂'s lag during the escape from a small
    initialisation can select another root than the flow, and the one training reaches
    (proofs/T10_adamw_shared.md, "Which root training selects"). Untied, without row options.

    Row options of ``FairAdamW`` (:func:`stationarity`; the variants are mapped onto them by
    :func:`imbalance.theory.fair_factored.factored_fair_adamw_equilibrium`): ``row_decay`` and
    ``moment_presence`` pairs (W rows (V,), E rows (C,)) of finite values ≥ 0, ``shared_second_moment``.
    """
    law = bigram_law(counts)
    C, V = law.shape
    lams, scalar = as_lams(lam, "lam")
    lams_e = lams if lam_e is None else np.broadcast_to(as_lams(lam_e, "lam_e")[0], lams.shape)
    B = None if batch_size is None else as_positive_int(batch_size, "batch_size")
    eps = as_nonnegative(eps, "eps")
    r = as_positive(r, "r")
    b2 = _beta2(betas)
    solver = _solver_options(method, h, t_max, polish, t_select, dt0, tol, max_steps, patience, fallback)
    solver["select"] = _as_select(select, lr, steps, betas, tied, row_decay, moment_presence, shared_second_moment,
                                  max(lams.max(), lams_e.max()))
    if _as_flag(tied, "tied") and (C != V or lam_e is not None):
        raise ValueError(f"tied=True needs square counts and no lam_e (one matrix, one decay), got "
                         f"counts.shape={(C, V)}, lam_e={lam_e!r}")
    W0, E0 = _as_tied_init(init, V) if tied else _as_init(init, V, C)
    opts = _row_options(row_decay, moment_presence, shared_second_moment, V, C)
    if tied and opts is not None:
        raise ValueError("the FairAdamW row options (row_decay, moment_presence, shared_second_moment) are "
                         "derived for the untied model only; got them with tied=True")
    pi = law.pi
    rows = [_one(law, float(a), float(b), W0, E0, B, eps, r, solver, opts) for a, b in zip(lams, lams_e)]
    bad = [(float(a), res) for a, (_, res, _) in zip(lams, rows) if not res < 10 * solver["tol"]]
    if bad:
        warnings.warn(f"AdamW equilibrium not certified at {len(bad)} of {len(rows)} λ: max|F| = "
                      f"{', '.join(f'{res:.1e} (λ={a:g})' for a, res in bad)} ≥ 10·tol = {10 * solver['tol']:g}; "
                      "the result is where the solver stopped (see ``residual``)", UncertifiedWarning, stacklevel=2)
    fields = [_summary(W, E, law, pi, r) + (res, t) for (W, E), res, t in rows]
    names = ("loss_per_token", "aggregate_loss", "token_balanced_loss", "W", "E", "singular_values", "rank",
             "unembedding_norms", "embedding_norms", "residual", "flow_time")
    out = {k: (fields[0][i] if scalar else np.asarray([f[i] for f in fields])) for i, k in enumerate(names)}
    return SharedAdamWEquilibrium(
        lam=float(lams[0]) if scalar else lams, lam_e=float(lams_e[0]) if scalar else np.array(lams_e),
        batch_size=B, eps=eps, token_frequency=pi,
        occurrences_per_window=(np.inf if B is None else B) * pi / (1.0 - b2), tied=bool(tied), **out)


def _row_pair(value, name, V, C):
    if value is None:
        return None
    try:
        a, b = (np.asarray(v, dtype=np.float64) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (W rows (V,), E rows (C,)) of arrays, "
                         f"got {name}={value!r:.80}") from None
    if a.shape != (V,) or b.shape != (C,):
        raise ValueError(f"{name} must be a pair of shapes ({V},), ({C},), got {a.shape}, {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or (a < 0).any() or (b < 0).any():
        raise ValueError(f"{name} must hold finite values >= 0, got min {min(a.min(), b.min())!r}")
    return a, b


def _row_options(row_decay, moment_presence, shared, V, C):
    """The validated row options (a dict of :func:`stationarity` keywords), None when all are off."""
    if not isinstance(shared, (bool, np.bool_)):
        raise ValueError(f"shared_second_moment must be True or False, got shared_second_moment={shared!r}")
    presence = _row_pair(moment_presence, "moment_presence", V, C)
    if presence is not None and any((p > 1).any() for p in presence):
        raise ValueError("moment_presence must lie in [0, 1] (a probability per row)")
    opts = dict(row_decay=_row_pair(row_decay, "row_decay", V, C), moment_presence=presence,
                shared_second_moment=bool(shared))
    return opts if (opts["row_decay"] is not None or presence is not None or shared) else None


def _beta2(betas):
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2) of numbers, got betas={betas!r:.80}") from None
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ValueError(f"betas must lie in [0, 1), got betas={betas!r}")
    return b2


def _summary(W, E, law, pi, r):
    Z = r * (E @ W.T)  # (C, V)
    m = Z.max(axis=1, keepdims=True)
    logp = Z - m - np.log(np.exp(Z - m).sum(axis=1, keepdims=True))
    tot = np.bincount(law.cols, weights=-law.joint * logp[law.seen[law.rows], law.cols], minlength=pi.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = np.where(pi > 0, tot / pi, np.nan)
    sv = np.zeros(min(Z.shape))
    k = min(Z.shape + W.shape)
    sv[:k] = np.linalg.svd(np.linalg.qr(E)[1] @ np.linalg.qr(W)[1].T, compute_uv=False)[:k]  # Z = Q_E R_E R_Wᵀ Q_Wᵀ
    sv *= r
    rank = int(np.sum(sv > RANK_RTOL * sv[0])) if sv[0] > 0 else 0
    return (loss, float(tot.sum()), float(np.nanmean(loss)), W, E.T.copy(), sv, rank,
            np.linalg.norm(W, axis=1), np.linalg.norm(E, axis=1))


def ufm_counts(pi, samples_per_class: int = 1) -> sp.csr_matrix:
    """The UFM as a factored bigram: one context (feature) per sample, followed by its class.

    ``samples_per_class`` = m gives each class m feature vectors of mass π_k/m each (rows
    k·m … k·m + m − 1); m = 1 is the collapsed, one-feature-per-class UFM."""
    pi = as_distribution(pi, "pi")
    m = as_positive_int(samples_per_class, "samples_per_class")
    K = pi.size
    rows = np.arange(K * m)
    return sp.csr_matrix((np.repeat(pi / m, m), (rows, rows // m)), shape=(K * m, K))


def ufm_adamw_equilibrium(pi, lam, *, init=None, lam_h=None, samples_per_class: int = 1,
                          **kwargs) -> SharedAdamWEquilibrium:
    """AdamW equilibrium of the UFM: classifiers W (K × d) and free features h (one per sample).

    A feature is the embedding of a context that is always followed by its class, so this is
    :func:`factored_bigram_adamw_equilibrium` on :func:`ufm_counts`; ``init`` = (W0 (K, d),
    H0 (K·m, d)); ``lam_h`` the decay of the features (default ``lam``). Under AdamW the decay
    of every feature is λ_H, not the π-weighted penalty of the L2 UFM (T5). ``E`` of the result
    holds the features as columns, ``loss_per_token[k]`` the loss of class k.

    With one sample per class every feature's per-sample gradient is deterministic, so its
    normalised update is a sign switch smoothed over ~ε; a feature coordinate inside its ℓ∞ box
    makes the root a few float64 units wide at ε = 1e-8, and the solver may then stop uncertified
    (``residual`` says so): ε = 1e-7 or 1e-6, a limit the losses have already reached, certifies
    (proofs/T10_adamw_shared.md, "Switch-like coordinates").
    """
    counts = ufm_counts(pi, samples_per_class)
    return factored_bigram_adamw_equilibrium(counts, lam, init=init, lam_e=lam_h, **kwargs)
