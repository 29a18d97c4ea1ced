"""Nuclear-norm-regularised softmax regression, solved to a certified duality gap.

The one convex problem behind the unconstrained-features model (T5) and the factored
bigram LM (T7) (Fang et al. 2021; Dang et al. 2024; Pinto et al. 2024 §4):

    min_Z  f(Z) + μ ‖diag(s) Z‖_*,    f(Z) = Σ_x w_x CE(q_x, z_x + b)

rows z_x are the logits of context/sample x, the target law enters only through the
weighted target matrix M = diag(w) Q (M_xj = w_x q_j(x), sparse), s > 0 scales rows and
b is an optional unpenalised bias shared by all rows. With ``psd=True`` the problem is
min_{Z ⪰ 0} f(Z) + μ tr Z (tied embeddings).

Method. Burer–Monteiro: Y = diag(s) Z = A Bᵀ with penalty (μ/2)(‖A‖² + ‖B‖²) (which
equals μ‖Y‖_* at a balanced factorisation), minimised by L-BFGS with a diagonal
Gauss–Newton initial metric; the rank is grown (after rebalancing by a thin SVD) along the
top singular pairs of the part of −∇f outside the current factor spans whenever their
singular value exceeds μ (descent directions of the convex problem). The stopping rule is the
Fenchel duality gap (see :func:`_certificate`), a bound on the distance to the optimal value
that holds for any iterate. Why not proximal gradient: every step needs a full SVD, and on a
500-token bigram corpus thousands of them still left the objective ~6e-5 (relative) above the
optimum. A certificate costs one Gram matrix + Lanczos + Cholesky, so it is taken after a
number of L-BFGS steps chosen from an operation count (about a fifth of the steps' cost): the
schedule, hence every iterate, ``n_iter`` and the rank, depends on the problem only, never on
the speed of the machine. Timings: tests/benchmarks/bench_factored.py.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._progress import progress_bar
from .._validate import as_count_matrix, as_lam_pair, as_positive, as_positive_int, as_real_array
from ._lbfgs import lbfgs_steps
from ._spectral import FULL_SVD_MAX, balance, dual_norm, growth_directions

__all__ = ["NuclearSolution", "solve_nuclear_softmax", "solve_path", "broadcast_lams", "check_penalty_range",
           "as_rtol", "MU_RANGE", "RTOL_MIN"]

# The penalty weights μ the solver accepts. Below: on a target the model can fit exactly (every
# UFM; a bigram corpus whose contexts each have one successor) the objective vanishes like
# μ·log(1/μ), and L-BFGS stops at rounding level before the *relative* gap reaches rtol: on
# 3–6-class problems it was certified at rtol = 1e-11 down to μ = 1e-5 and stopped uncertified
# from μ ≈ 3e-6 (a RuntimeWarning). Above: for μ ≥ ‖∇f(0)‖₂ (≤ max_x w_x/s_x) Z = 0 is optimal;
# the bound only keeps products of μ with the data finite.
MU_RANGE = (1e-5, 1e12)
# The duality gap is a difference of two sums of n·V terms of size |primal|, each rounded at
# ~1e-16 relative: a relative gap far below 1e-13 is rounding noise and cannot certify anything.
RTOL_MIN = 1e-13


@dataclass(frozen=True)
class NuclearSolution:
    """Certified solution of the nuclear-norm problem (row convention: Z is n × V).

    ``left``/``right`` are balanced factors of Y = diag(s) Z (Z for ``psd``):
    Y = left @ right.T with ‖left‖² = ‖right‖² = ‖Y‖_*; ``singular_values`` are those
    of Y in decreasing order. ``gap`` = primal − dual ≥ objective − optimum.
    ``dual_ratio`` = ‖∇_Y f‖₂ / μ (untied) or −λ_min(sym ∇f)/μ (psd); ≤ 1 at the optimum.
    """

    logits: np.ndarray
    bias: np.ndarray
    left: np.ndarray
    right: np.ndarray
    singular_values: np.ndarray
    objective: float
    dual_value: float
    gap: float
    rel_gap: float
    dual_ratio: float
    bias_residual: float
    n_iter: int


class _Problem:
    def __init__(self, target, mu, row_scale, psd, bias):
        M = sp.coo_matrix(target)
        self.n, self.V = M.shape
        self.rows, self.cols, self.data = M.row.astype(np.int64), M.col.astype(np.int64), M.data.astype(np.float64)
        self.w = np.bincount(self.rows, weights=self.data, minlength=self.n)
        self.scaled = row_scale is not None
        self.inv_s = np.ones(self.n) if row_scale is None else 1.0 / np.asarray(row_scale, dtype=np.float64)
        self.mu, self.psd, self.bias = float(mu), psd, bias
        self.seen = self.w > 0

    def unpack(self, x, r):
        n, V = self.n, self.V
        A = x[: n * r].reshape(n, r)
        if self.psd:
            return A, A, np.zeros(V)
        B = x[n * r: (n + V) * r].reshape(V, r)
        b = x[(n + V) * r:] if self.bias else np.zeros(V)
        return A, B, b

    def pack(self, A, B, b):
        parts = [A.ravel()] if self.psd else [A.ravel(), B.ravel()] + ([b] if self.bias else [])
        return np.concatenate(parts)

    def logits(self, A, B, b):
        return (A @ B.T) * self.inv_s[:, None] + b[None, :]  # (n, V)

    def loss_grad(self, Z):
        """f(Z), softmax P and ∇_Z f = diag(w) P − M (all (n, V))."""
        m = Z.max(axis=1, keepdims=True)
        E = np.exp(Z - m)
        tot = E.sum(axis=1, keepdims=True)
        P = E / tot
        # Σ_xv M_xv (m_x − z_xv) + Σ_x w_x log tot_x: no cancellation of two large sums when a
        # row is nearly certain (then m_x − z_xv is 0 exactly and the loss is log tot_x ≈ tiny)
        f = float(self.data @ (m[self.rows, 0] - Z[self.rows, self.cols]) + self.w @ np.log(tot[:, 0]))
        G = self.w[:, None] * P
        G[self.rows, self.cols] -= self.data
        return f, P, G

    def fun(self, x, r):
        """Factored objective and gradient; in-place on one (n, V) buffer (memory traffic,
        not flops, bounds an evaluation on the two shared cores)."""
        A, B, b = self.unpack(x, r)
        Z = A @ B.T  # (n, V), becomes Z, then exp(Z − m), then ∇_Y f
        if self.scaled:
            Z *= self.inv_s[:, None]
        if self.bias:
            Z += b[None, :]
        m = Z.max(axis=1)
        Z -= m[:, None]
        gap_t = -Z[self.rows, self.cols]  # m_x − z_xv on the targets, ≥ 0 (see loss_grad)
        np.exp(Z, out=Z)
        tot = Z.sum(axis=1)
        f = float(self.data @ gap_t + self.w @ np.log(tot))
        Z *= (self.w * self.inv_s / tot)[:, None]
        Z[self.rows, self.cols] -= self.data * self.inv_s[self.rows]
        Gy = Z
        if self.psd:
            return f + self.mu * float(np.sum(A * A)), ((Gy + Gy.T) @ A + 2 * self.mu * A).ravel()
        pen = 0.5 * self.mu * (float(np.sum(A * A)) + float(np.sum(B * B)))
        parts = [(Gy @ B + self.mu * A).ravel(), (Gy.T @ A + self.mu * B).ravel()]
        if self.bias:
            parts.append((Gy * (1.0 / self.inv_s)[:, None]).sum(axis=0))
        return f + pen, np.concatenate(parts)

    def curvature(self, x, r):
        """Diagonal of the Gauss–Newton Hessian of the factored objective (plus μ): the
        L-BFGS initial metric. Row weights P(x) span five decades on Zipfian text, and a
        scalar initial metric left L-BFGS 1700 iterations on a V = 500 bigram."""
        A, B, b = self.unpack(x, r)
        _, P, _ = self.loss_grad(self.logits(A, B, b))
        wt = (self.w * self.inv_s ** 2)[:, None]
        Pv = wt * P * (1 - P)  # (n, V)
        dA = wt * (P @ (B * B) - (P @ B) ** 2)
        dB = Pv.T @ (A * A)
        if self.psd:
            return (dA + dB + 2 * self.mu).ravel()
        parts = [(dA + self.mu).ravel(), (dB + self.mu).ravel()]
        if self.bias:
            parts.append((self.w[:, None] * P * (1 - P)).sum(axis=0) + 1e-12 * self.w.sum())
        return np.concatenate(parts)

    def entropy_dual(self, P, theta, shift=None):
        """Σ_x w_x H(θ p_x + (1−θ) q_x − shift): the dual objective −f*(U) at the dual point
        U_x = (w_x/s_x)(θ p_x + (1−θ) q_x − shift − q_x) (f* is negative entropy); −∞ if a
        shifted row leaves the simplex."""
        Pm = theta * P[self.seen]
        idx = np.cumsum(self.seen) - 1
        Pm[idx[self.rows], self.cols] += (1 - theta) * self.data / self.w[self.rows]
        if shift is not None:
            Pm -= shift[None, :]
            if (Pm < 0).any():
                return -np.inf
        with np.errstate(divide="ignore", invalid="ignore"):
            H = -np.where(Pm > 0, Pm * np.log(Pm), 0.0).sum(axis=1)
        return float(self.w[self.seen] @ H)


def _certificate(prob, A, B, b, rng, rtol):
    """Primal value with the factor penalty (≥ P(Y)), and the dual value −f*(U) at a feasible
    dual point U; their difference bounds primal − optimum.

    U = θ∇_Y f, θ = min(1, μ/‖∇_Y f‖₂). With a bias the dual also needs Σ_x s_x U_x = 0, which
    ∇f meets only up to the bias gradient c = Σ_x w_x (p_x − q_x): every row's probability is
    shifted by θc/Σw (a rank-one change of U of norm ≤ θ‖w/s‖‖c‖/Σw, added to ‖∇f‖₂ when
    choosing θ), so the bound is rigorous at any bias residual."""
    Z = prob.logits(A, B, b)
    f, P, G = prob.loss_grad(Z)
    Gy = G * prob.inv_s[:, None]
    top = dual_norm(prob, Gy, rng, rtol)
    c = G.sum(axis=0) if prob.bias else None  # (V,) ∇_b f
    delta = float(np.linalg.norm(prob.w * prob.inv_s) * np.linalg.norm(c) / prob.w.sum()) if prob.bias else 0.0
    theta = 1.0 if top + delta <= prob.mu else prob.mu / (top + delta)
    if prob.psd:
        primal = f + prob.mu * float(np.sum(A * A))
    else:
        primal = f + 0.5 * prob.mu * (float(np.sum(A * A)) + float(np.sum(B * B)))
    dual = prob.entropy_dual(P, theta, None if c is None else theta * c / prob.w.sum())
    bias_res = float(np.abs(c).max()) if prob.bias else 0.0
    return Z, Gy, primal, dual, top / prob.mu, bias_res


@dataclass
class _State:
    """Loop state of :func:`solve_nuclear_softmax`: factors, the L-BFGS step generator at the
    current rank (None: restart), and the rank-growth bookkeeping."""

    A: np.ndarray
    B: np.ndarray
    b: np.ndarray
    n_iter: int = 0
    k_dirs: int = 16  # growth directions asked for per check (doubles while all are taken)
    last_growth: int = -10**9
    stalled: bool = False  # line search exhausted at this rank
    steps: object = None
    metric: list | None = None
    polished: bool = False  # bias polished by Newton once L-BFGS stalled


def _check_interval(prob, r, check_every):
    """L-BFGS steps between certificates: ≥ ``check_every`` and enough that a certificate
    (Gram matrix n·V·m, capped Lanczos + Cholesky or a dense eigensolve, ≲ 3m³, m = min(n, V))
    costs ≤ ~20 % of the steps (≈ 2 evaluations of 2·n·V·(r + 5) flops each). An operation
    count, not a clock."""
    n, V = prob.n, prob.V
    m = min(n, V)
    cert = 3.0 * m ** 3 + (0 if prob.psd else n * V * m)
    step = 4.0 * n * V * (r + 5)
    return max(int(check_every), int(np.ceil(cert / (4.0 * step))))


def _grow(prob, st, Gy, rng, Lcurv):
    """Add the top singular pairs of −∇f outside the factor spans whose value exceeds μ (descent
    lemma step √((σ − μ)/L)); returns False when there is nothing to add."""
    n, V, psd = prob.n, prob.V, prob.psd
    k = min(n, V) if min(n, V) <= FULL_SVD_MAX else min(st.k_dirs, min(n, V) - 1)
    vals, U, Vv = growth_directions(prob, Gy, st.A, st.B, k, rng)
    grow = vals > prob.mu
    if not grow.any():
        return False
    A, B, _ = balance(prob, st.A, st.B)
    t = np.sqrt((vals[grow] - prob.mu) / Lcurv)  # decrease ≥ Σ (σ_i − μ)²/(2L)
    st.A = np.hstack([A, (U[:, grow] if psd else -U[:, grow]) * t])
    st.B = st.A if psd else np.hstack([B, Vv[:, grow] * t])
    st.k_dirs = min(2 * st.k_dirs, 512) if grow.all() else st.k_dirs
    st.stalled, st.steps = False, None  # new variables: restart the quasi-Newton memory
    return True


def _polish_bias(prob, st, steps=8):
    """Newton steps on the bias at fixed factors (Hessian Σ_x w_x (diag p_x − p_x p_xᵀ), singular
    along 𝟙: least squares), with backtracking on f. L-BFGS can stall at rounding level with a
    bias gradient that still costs a gap ≫ rtol when the class weights span many decades."""
    f, P, G = prob.loss_grad(prob.logits(st.A, st.B, st.b))
    for _ in range(steps):
        c = G.sum(axis=0)  # (V,) ∇_b f
        Wp = prob.w[:, None] * P  # (n, V)
        H = np.diag(Wp.sum(axis=0)) - P.T @ Wp  # (V, V)
        d = np.linalg.lstsq(H, -c, rcond=1e-14)[0]
        t = 1.0
        while t > 1e-4:
            fn, Pn, Gn = prob.loss_grad(prob.logits(st.A, st.B, st.b + t * d))
            if fn <= f:
                break
            t *= 0.5
        else:
            return
        st.b, f, P, G = st.b + t * d, fn, Pn, Gn
    st.steps = None


def _run_lbfgs(prob, st, todo, max_iter, memory):
    """Up to ``todo`` L-BFGS steps at the current rank (restarting the memory if asked)."""
    r = st.A.shape[1]
    fresh = st.steps is None
    if fresh:
        x0 = prob.pack(st.A, st.B, st.b)
        st.metric = [prob.curvature(x0, r)]
        st.steps = lbfgs_steps(lambda v, r=r: prob.fun(v, r), x0, memory, st.metric)
    else:
        st.metric[0] = prob.curvature(prob.pack(st.A, st.B, st.b), r)
    x = None
    for x in st.steps:  # noqa: B007 (x tells after the loop whether a step was taken)
        st.n_iter += 1
        todo -= 1
        if todo <= 0 or st.n_iter >= max_iter:
            break
    if x is None:  # line search exhausted: restart the memory; stalled if a fresh start cannot move
        st.steps, st.stalled = None, fresh
        return
    st.A, st.B, st.b = prob.unpack(x, r)
    if prob.psd:
        st.B = st.A


def _check_row_scale(row_scale, n):
    """None, or n finite scales in [1e-150, 1e150] (they enter squared, in w/s², and must stay finite)."""
    if row_scale is None:
        return None
    s = as_real_array(row_scale, "row_scale", "a 1-D array of positive scales")
    if s.shape != (n,):
        raise ValueError(f"row_scale must have shape ({n},) (one scale per target row), got shape {s.shape}")
    bad = ~np.isfinite(s) | ~((s >= 1e-150) & (s <= 1e150))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"row_scale must be finite and in [1e-150, 1e150], got row_scale[{i}]={s[i]!r}")
    return s


def _check_row_penalty(target, mu: float, row_scale) -> None:
    """With a ``row_scale``, each row's own penalty weight μ s_x/√w_x (w_x its target mass > 0)
    must reach MU_RANGE[0]. For the UFM (s = √w) this is the μ range itself; a row far below it
    is barely regularised and ill-conditions the factor coordinates: on 3-class problems rows
    down to 1.5e-5 were certified within 7,000 L-BFGS steps, while rows at 1e-6–1e-12 ran the
    full 20,000 steps and stopped uncertified (relative gaps 1e-8 to 0.3)."""
    w = np.asarray(target.sum(axis=1)).ravel()  # (n,)
    rows = np.flatnonzero(w > 0)
    with np.errstate(under="ignore"):
        row_mu = mu * row_scale[rows] / np.sqrt(w[rows])  # (rows,)
    if row_mu.size and row_mu.min() < MU_RANGE[0] * (1 - 1e-12):  # rounding of s/√w when s = √w
        i = int(rows[np.argmin(row_mu)])
        raise ValueError(f"row_scale gives row {i} the penalty weight mu*row_scale[{i}]/sqrt(w[{i}])="
                         f"{row_mu.min():.3g} < {MU_RANGE[0]:g}, below which the solver cannot certify its "
                         f"answer, got row_scale[{i}]={float(row_scale[i])!r} (mu={mu!r}, w[{i}]={float(w[i])!r})")


def _checked(target, mu, row_scale, psd, bias, warm, rtol, max_iter, check_every, memory):
    """The arguments of :func:`solve_nuclear_softmax`, validated (``ValueError`` naming each)."""
    mu = as_positive(mu, "mu")
    if not MU_RANGE[0] <= mu <= MU_RANGE[1]:
        raise ValueError(f"mu must be in [{MU_RANGE[0]:g}, {MU_RANGE[1]:g}] (where the solver certifies its "
                         f"answer), got mu={mu!r}")
    rtol = as_rtol(rtol)
    max_iter = as_positive_int(max_iter, "max_iter")
    check_every = as_positive_int(check_every, "check_every")
    memory = as_positive_int(memory, "memory")
    target = as_count_matrix(target, "target")
    row_scale = _check_row_scale(row_scale, target.shape[0])
    if row_scale is not None:
        _check_row_penalty(target, mu, row_scale)
    for name, flag in (("psd", psd), ("bias", bias)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {name}={flag!r}")
    if warm is not None and not (isinstance(warm, NuclearSolution) and warm.left.shape[0] == target.shape[0]
                                 and warm.right.shape[0] == target.shape[1]):
        raise ValueError(f"warm must be a NuclearSolution of a target of shape {target.shape}, got warm={warm!r:.80}")
    return target, mu, row_scale, rtol, max_iter, check_every, memory


def solve_nuclear_softmax(target, mu, *, row_scale=None, psd=False, bias=False, warm=None,
                          rtol=1e-9, max_iter=20000, check_every=20, memory=5, seed=0) -> NuclearSolution:
    """Minimise Σ_x w_x CE(q_x, z_x + b) + μ‖diag(s) Z‖_* (or μ tr Z, Z ⪰ 0, if ``psd``).

    ``target`` is M = diag(w) Q (n × V, dense or sparse, non-negative), ``row_scale`` s (n,),
    ``warm`` a previous :class:`NuclearSolution` (same shapes). Stops when the duality gap
    is ≤ rtol·|primal| (rigorous with a bias too, see :func:`_certificate`), or warns after ``max_iter``
    L-BFGS steps. Deterministic: the same input gives the same bits on any machine.
    ``mu`` must lie in :data:`MU_RANGE`, each row's penalty weight μ s_x/√w_x must reach its lower
    end, and ``rtol`` must lie in [:data:`RTOL_MIN`, 1) (see their comments);
    every argument is validated (``ValueError`` naming it).
    """
    target, mu, row_scale, rtol, max_iter, check_every, memory = _checked(
        target, mu, row_scale, psd, bias, warm, rtol, max_iter, check_every, memory)
    prob = _Problem(target, mu, row_scale, psd, bias)
    rng = np.random.default_rng(seed)
    n, V = prob.n, prob.V
    if psd and n != V:
        raise ValueError(f"psd needs a square target, got shape {(n, V)}")
    if warm is not None:
        st = _State(warm.left.copy(), warm.right.copy(), warm.bias.copy())
    else:
        st = _State(np.zeros((n, 0)), np.zeros((V, 0)), np.zeros(V))
    # curvature bound of f along a unit direction in Y coordinates: ‖diag(p) − ppᵀ‖ ≤ 1/2
    Lcurv = 0.5 * float(np.max(prob.w * prob.inv_s ** 2))
    while True:
        # the certificate uses the factor penalty (μ/2)(‖A‖² + ‖B‖²) ≥ μ‖ABᵀ‖_*, valid without
        # rebalancing; L-BFGS balances the factors itself
        Z, Gy, primal, dual, ratio, bias_res = _certificate(prob, st.A, st.B, st.b, rng, rtol)
        gap = primal - dual
        if gap <= rtol * abs(primal) or st.n_iter >= max_iter:
            break
        interval = _check_interval(prob, st.A.shape[1], check_every)
        if st.steps is None or (ratio > 1 + 1e-3 and st.n_iter - st.last_growth >= 3 * interval):
            st.last_growth = st.n_iter
            if not _grow(prob, st, Gy, rng, Lcurv) and st.stalled:
                if prob.bias and not st.polished:
                    _polish_bias(prob, st)
                    st.polished = True
                    continue
                break  # rounding level reached and no direction left to add
        _run_lbfgs(prob, st, interval, max_iter, memory)
    A, B, S = balance(prob, st.A, st.B)
    if not gap <= rtol * abs(primal):
        warnings.warn(f"nuclear solver stopped uncertified after {st.n_iter} steps: relative gap "
                      f"{gap / abs(primal):.2e} > rtol={rtol:g}", RuntimeWarning, stacklevel=3)
    return NuclearSolution(
        logits=Z, bias=st.b.copy(), left=A, right=B, singular_values=S, objective=primal, dual_value=dual,
        gap=gap, rel_gap=gap / abs(primal), dual_ratio=ratio, bias_residual=bias_res, n_iter=st.n_iter,
    )


broadcast_lams = as_lam_pair  # the one λ-pair validator (imbalance._validate), under the name the solvers use


def as_rtol(rtol, name: str = "rtol") -> float:
    """A relative duality-gap tolerance in [RTOL_MIN, 1): a gap ≥ the objective certifies nothing,
    one below :data:`RTOL_MIN` is below rounding."""
    rtol = as_positive(rtol, name)
    if not RTOL_MIN <= rtol < 1:
        raise ValueError(f"{name} must be in [{RTOL_MIN:g}, 1) (a relative duality gap that float64 can "
                         f"certify), got {name}={rtol!r}")
    return rtol


def check_penalty_range(lam_a: np.ndarray, name_a: str, lam_b: np.ndarray, name_b: str, tied: bool = False) -> None:
    """Refuse decays (equal-length 1-D paths) whose penalty weight μ = √(λ_a·λ_b) (λ_a/2 if
    ``tied``) lies outside :data:`MU_RANGE`, or whose ratio λ_b/λ_a is beyond 1e±200 (the balanced
    factors scale by (λ_b/λ_a)^{±1/4} and must stay finite). In logarithms: no product overflows."""
    lo, hi = MU_RANGE
    for a, b in zip(lam_a, lam_b):
        log_mu = np.log10(a) - np.log10(2.0) if tied else 0.5 * (np.log10(a) + np.log10(b))
        if not np.log10(lo) <= log_mu <= np.log10(hi):
            given = f"{name_a}={a!r}" if tied else f"{name_a}={a!r}, {name_b}={b!r}"
            raise ValueError(f"{given} give a penalty weight μ = 10^{log_mu:.3g} outside [{lo:g}, {hi:g}], "
                             "the range where the solver certifies its answer")
        if abs(np.log10(b) - np.log10(a)) > 200:
            raise ValueError(f"{name_b}/{name_a} must lie in [1e-200, 1e200] (the factors scale by its "
                             f"fourth root), got {name_a}={a!r}, {name_b}={b!r}")


def solve_path(target, mus, **kwargs) -> list[NuclearSolution]:
    """Solve for every μ in ``mus``, from the largest to the smallest (low rank first),
    warm-starting each solve from the previous one; results in the input order."""
    order = np.argsort(-np.asarray(mus), kind="stable")
    out: list = [None] * len(mus)
    warm = None
    for i in progress_bar(order, desc="nuclear-norm solves (λ path)"):
        warm = solve_nuclear_softmax(target, float(mus[i]), warm=warm, **kwargs)
        out[i] = warm
    return out
