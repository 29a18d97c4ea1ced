"""Segmented solver for softmax fixed points p = softmax(h(p)) with coordinate-wise h.

Every model of T1–T3 reduces, per context x and weight decay λ, to finding
probabilities p_j with

    log p_j = h_j(p_j) − s,      Σ_j m_j p_j = 1,

where the logit z_j = h_j(p_j) is a decreasing function of the coordinate's own
probability (L2: h(p) = κ(q − p); AdamW: the decoupled-decay balance of T3) and
s = log Σ exp z is the log-partition. For a fixed s each coordinate is a monotone
scalar equation (closed form with Wright ω under L2, safeguarded Newton under AdamW);
Σ_j m_j p_j(s) is strictly decreasing in s, so s is the unique root of a monotone
scalar equation too. The multiplicity m_j lets all tokens absent from a context
(q_j = 0, hence identical) be one item, which makes the work O(nnz).

Items are flat arrays over (λ, context, coordinate); a segment is one (λ, context).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import wrightomega

from ._roots import EPS, increasing_root


def _cached(obj, name, make):
    if name not in obj.__dict__:
        object.__setattr__(obj, name, make())
    return obj.__dict__[name]


@dataclass(frozen=True)
class Layout:
    """Flat item arrays: ``seg`` (segment of each item, non-decreasing), ``q`` (target
    probability), ``mult`` (how many identical coordinates the item stands for), and
    ``defect`` = Σ m q − 1 per segment, correctly rounded (see ``exact_defect``)."""

    seg: np.ndarray
    q: np.ndarray
    mult: np.ndarray
    n_seg: int
    defect: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """Number of items per segment."""
        return _cached(self, "_counts", lambda: np.bincount(self.seg, minlength=self.n_seg).astype(np.float64))

    @property
    def total_mult(self) -> np.ndarray:
        """Σ m per segment (the vocabulary size)."""
        return _cached(self, "_total", lambda: np.bincount(self.seg, weights=self.mult, minlength=self.n_seg))


@dataclass
class Solution:
    p: np.ndarray       # (n_items,) probabilities, normalised per segment
    logp: np.ndarray    # (n_items,) log-probabilities
    logits: np.ndarray  # (n_items,) z_j = h_j(p_j)
    s: np.ndarray       # (n_seg,) log-partition
    iterations: int


def _direct_residual(idx, sg, p, layout):
    """G = Σ m (p − q) + (Σ m q − 1), the second term exact (``layout.defect``)."""
    G = np.bincount(sg, weights=layout.mult[idx] * (p - layout.q[idx]), minlength=layout.n_seg) + layout.defect
    # each p has a few ulps of error and a sum of n terms adds n ulps of Σ m (p + q) = 2 + G
    return G, (layout.counts + 4.0) * EPS * (2.0 + np.abs(G))


class L2Response:
    """h(p) = κ(q − p): the stationarity of CE + (λ/2)‖w‖² with κ = P r²/λ (T1, T2).

    With y = κ p the coordinate equation log p + κ p = κ q − s reads
    log y + y = κ q + log κ − s, so y = ω(κ q + log κ − s) (Wright ω, no overflow).
    """

    def __init__(self, kappa: np.ndarray, q: np.ndarray):
        self.kappa = kappa
        self.logk = np.log(kappa)
        self.kq = kappa * q
        # logits lie in [−κ, κ] (|q − p| <= 1)
        self.bound = kappa

    def solve(self, idx, s):
        y = wrightomega(self.kq[idx] + self.logk[idx] - s)
        p = y / self.kappa[idx]
        logp = np.log(y) - self.logk[idx]
        return p, logp, -p / (1.0 + y)

    def residual(self, idx, sg, p, logp, s, layout):
        """G = F − 1 by the better-rounded of two exact expressions.

        Directly, Σ m (p − q) + defect (error ~ n·eps); or, since p − q = −z/κ and
        z = log p + s, as −Σ m (log p + s)/κ (error ~ n·eps·Σ|log p| /κ): far smaller
        when κ is large (small λ), where F is flat in s and G must be tiny to pin s.
        """
        Ga, ea = _direct_residual(idx, sg, p, layout)
        n_seg, mult = layout.n_seg, layout.mult[idx]
        kap = np.ones(n_seg)
        kap[sg] = self.kappa[idx]  # κ is constant within a segment
        zsum = np.bincount(sg, weights=mult * (logp + s), minlength=n_seg)
        size = np.bincount(sg, weights=mult * (np.abs(logp) + np.abs(s)), minlength=n_seg)
        Gb = -zsum / kap
        eb = (layout.counts + 4.0) * EPS * size / kap
        use_b = eb < ea
        return np.where(use_b, Gb, Ga), np.where(use_b, eb, ea)

    def logits(self, idx, p, logp, s, layout):
        # Σ_j m_j z_j = κ(Σ m q − Σ m p) = 0, so z_j = log p_j − mean_m(log p) exactly.
        # Two exact expressions with different rounding: κq − κp loses digits when
        # |z| << κq (small λ), the centred log p when |log p| >> |z| (large λ); keep the
        # one with the smaller error bound. (s itself is ill-determined at small λ,
        # where Σp is flat in s, so log p + s is never used.)
        seg, mult = layout.seg[idx], layout.mult[idx]
        M = np.bincount(seg, weights=mult, minlength=layout.n_seg)
        mlog = np.bincount(seg, weights=mult * logp, minlength=layout.n_seg) / M
        mabs = np.bincount(seg, weights=mult * np.abs(logp), minlength=layout.n_seg) / M
        y = self.kappa[idx] * p
        za = self.kq[idx] - y
        zb = logp - mlog[seg]
        use_a = (self.kq[idx] + y) <= (np.abs(logp) + mabs[seg])
        return np.where(use_a, za, zb)


def _deviation(u, q, logq):
    """d = p − q from u = log p, as q·expm1(u − log q): exact near p = q, where e^u − q
    would cancel (and a near-certain p rounding to 1 would put d on the jump)."""
    # beyond e^700 the deviation is astronomically large either way and f saturates
    return np.where(q > 0, q * np.expm1(np.minimum(u - logq, 700.0)), np.exp(np.minimum(u, 700.0)))


class AdamWResponse:
    """T3: λ w = −E[g] / (√E[g²] + ε) with z = r w, per coordinate.

    E[g] = P r d, E[g²] = r² (A + β d²), d = p − q, A = P σ²/B, β = (P(1−P) + B P²)/B,
    so z = h(p) = −c f(d), c = r² P / λ, f(d) = d / (r √(A + β d²) + ε).
    """

    def __init__(self, c, q, A, beta, r, eps):
        self.c, self.q, self.A, self.beta, self.r, self.eps = c, q, A, beta, r, eps
        # |f| <= 1/(r √β): logits lie in [−H, H], H = r ρ / λ
        self.bound = c / (r * np.sqrt(beta))
        # warm start of the coordinate solves: log p and s of each item's previous outer
        # iteration (NaN: none yet)
        self.u = np.full(np.shape(q), np.nan)
        self.s_prev = np.zeros(np.shape(q))

    def f_and_df(self, d, idx, par=None):
        """f(d) = d/(r√(A + βd²) + ε) and f'(d) = (rA + ε√(·)) / (√(·)(r√(·) + ε)²).

        With A = 0 (deterministic target) f' = ε/(r√β|d| + ε)²; with A = ε = 0 as well
        f is the step sign(d)/(r√β) and f' = 0 off d = 0. On the jump (A = ε = d = 0) f is
        the limit from the side where p lies: q = 1 means p <= 1, d -> 0⁻; q = 0 means p
        underflowed, d -> 0⁺. ``par`` optionally holds (A, β, q) already gathered at idx.
        """
        A, beta, q = (self.A[idx], self.beta[idx], self.q[idx]) if par is None else par
        r, eps = self.r, self.eps
        d = np.clip(d, -1e60, 1e60)  # f has saturated long before; keeps d² finite
        # √(A + βd²) by hypot: d² of an underflowed p (|d| ~ 1e-156) is subnormal and would keep
        # only ~12 significant digits of f (2e-13 relative error in λw at A = ε = 0)
        root = np.hypot(np.sqrt(A), np.sqrt(beta) * d)
        den = r * root + eps
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # den² = inf: f' -> 0, its limit
            f = d / den
            df = (r * A + eps * root) / (root * den * den)
        flat = root == 0  # A = 0 and d = 0: rare, patched in place
        if flat.any():
            lim = np.where(q[flat] >= 1, -1.0, np.where(q[flat] <= 0, 1.0, 0.0)) / (r * np.sqrt(beta[flat]))
            f[flat] = lim if eps == 0 else 0.0
            df[flat] = 0.0 if eps == 0 else 1.0 / eps
        return f, df

    def solve(self, idx, s):
        c, q = self.c[idx], self.q[idx]
        H = self.bound[idx]
        A, beta = self.A[idx], self.beta[idx]
        logq = np.log(np.where(q > 0, q, 1.0))

        def psi(u, sub):
            qs = q[sub]
            f, df = self.f_and_df(_deviation(u, qs, logq[sub]), None, (A[sub], beta[sub], qs))
            cf = c[sub] * f
            return u + cf + s[sub], 1.0 + c[sub] * df * np.exp(np.minimum(u, 700.0)), \
                np.abs(u) + np.abs(cf) + np.abs(s[sub])

        # warm start: z = u + s moves little between outer iterations, u does by −Δs
        u0 = self.u[idx] - (s - self.s_prev[idx])
        u0 = np.where(np.isfinite(u0), u0, -s)
        u = increasing_root(psi, -s - H, -s + H, u0, atol=4 * EPS)
        self.u[idx] = u
        self.s_prev[idx] = s
        p = np.exp(np.minimum(u, 700.0))
        f, df = self.f_and_df(_deviation(u, q, logq), None, (A, beta, q))
        dpsi = 1.0 + c * df * p
        dpds = -p / dpsi
        # a generalised root on the jump of f (A = ε = 0) pins p to q: there p does not
        # move with s, and Newton on s must know it
        on_jump = np.abs(u + c * f + s) > 1e-9 * (1.0 + np.abs(u) + np.abs(s))
        return p, u, np.where(on_jump, 0.0, dpds)

    def deviation(self, u, idx):
        q = self.q[idx]
        return _deviation(u, q, np.log(np.where(q > 0, q, 1.0)))

    def physical_deviation(self, u, idx):
        """``deviation`` at a solution, where p <= 1: a root found on the jump at
        p = q = 1 may sit an ulp above u = 0, which must not flip the sign of d."""
        d = self.deviation(u, idx)
        return np.where(self.q[idx] >= 1, np.minimum(d, 0.0), d)

    def residual(self, idx, sg, p, logp, s, layout):
        return _direct_residual(idx, sg, p, layout)

    def logits(self, idx, p, logp, s, layout):
        f, _ = self.f_and_df(self.physical_deviation(logp, idx), idx)
        return -self.c[idx] * f

    def polish(self, z, layout, steps: int = 8):
        """Newton on R(z) = z − h(softmax(z)) in the logits themselves.

        The nested solve works with log p = z − s, which cannot resolve 1 − p for a
        near-certain prediction once |s| is large (s ≈ H = rρ/λ): at λ = 1e-3, B = 64,
        ε = 1e-8 its losses were off by 1e-6 relative. Here d = p − q comes from a stable
        softmax (1 − p_max = rest/(1 + rest)); the Jacobian I + diag(c f' p) − ... is
        diagonal plus rank one per segment, so each step is O(n). A step is kept only if
        it lowers max |R| of its segment.
        """
        seg, mult, n_seg = layout.seg, layout.mult, layout.n_seg
        idx = np.arange(z.size)

        def residual(z):
            logp, _ = log_softmax_segments(z, layout)
            p = np.exp(logp)
            d = self.physical_deviation(logp, idx)
            # the largest logit of a segment: 1 − p = Σ_others m e^{z − z_max} / (1 + ·)
            zmax = np.full(n_seg, -np.inf)
            np.maximum.at(zmax, seg, np.where(mult > 0, z, -np.inf))
            e = np.where(mult > 0, mult * np.exp(z - zmax[seg]), 0.0)
            top = (z == zmax[seg]) & (mult == 1)
            rest = np.bincount(seg, weights=np.where(top, 0.0, e), minlength=n_seg)[seg]
            d = np.where(top & (self.q >= 1), -rest / (1.0 + rest), d)
            f, df = self.f_and_df(d, idx)
            R = z + self.c * f
            worst = np.zeros(n_seg)
            np.maximum.at(worst, seg, np.abs(R))
            return R, p, df, worst

        R, p, df, worst = residual(z)
        for _ in range(steps):
            Dg = 1.0 + self.c * df * p              # diagonal of J
            a = -self.c * df * p                    # J = diag(Dg) + a bᵀ, a_i = h'_i p_i (h' = −c f')
            b = mult * p
            x = -R / Dg
            y = a / Dg
            num = np.bincount(seg, weights=b * x, minlength=n_seg)
            den = 1.0 + np.bincount(seg, weights=b * y, minlength=n_seg)
            with np.errstate(divide="ignore", invalid="ignore"):  # a singular segment's step is dropped below
                delta = x - y * (num / den)[seg]
            z_try = z + np.where(np.isfinite(delta), delta, 0.0)
            R2, p2, df2, worst2 = residual(z_try)
            better = (worst2 < worst)[seg]
            if not better.any():
                break
            z = np.where(better, z_try, z)
            R, p, df = np.where(better, R2, R), np.where(better, p2, p), np.where(better, df2, df)
            worst = np.minimum(worst, worst2)
        return z


class _Outer:
    """State of the outer iteration on s, one entry per segment: the bracket [lo, hi], the
    current s, the previous |G| (to tell fast Newton from slow) and which segments are live."""

    def __init__(self, layout: Layout, response):
        seg, n_seg = layout.seg, layout.n_seg
        M = np.bincount(seg, weights=layout.mult, minlength=n_seg)
        H = np.zeros(n_seg)
        np.maximum.at(H, seg, response.bound)
        # every logit lies in [−H, H], so with M the total multiplicity log M − H <= s <= log M + H
        self.lo, self.hi = np.log(M) - H, np.log(M) + H
        self.s = np.log(M).copy()
        self.prev_G = np.full(n_seg, np.inf)
        self.active = np.ones(n_seg, dtype=bool)

    def step(self, act, Ga, dFa, Gerr, counts, first: bool):
        """Next s of the live segments ``act`` from G = F − 1 and dF/ds; returns (s_new, s_log,
        s_lin, done): safeguarded Newton (on log F, else on F, else bisection) and which
        segments have converged."""
        sa = self.s[act]
        self.lo[act] = np.where(Ga >= 0, sa, self.lo[act])
        self.hi[act] = np.where(Ga <= 0, sa, self.hi[act])
        lo, hi = self.lo[act], self.hi[act]
        with np.errstate(divide="ignore", invalid="ignore"):
            s_log = sa - np.log1p(Ga) * (1 + Ga) / dFa  # Newton on log F: exact when F ∝ e^{−s}
            s_lin = sa - Ga / dFa                       # Newton on F: exact when F is linear
        inside = lambda t: np.isfinite(t) & (t > lo) & (t < hi)  # noqa: E731
        s_new = np.where(inside(s_log), s_log, np.where(inside(s_lin), s_lin, 0.5 * (lo + hi)))
        if not first:  # Newton that does not halve |G| is not converging fast: bisect instead
            s_new = np.where(np.abs(Ga) <= 0.5 * self.prev_G[act], s_new, 0.5 * (lo + hi))
        scale = np.maximum(1.0, np.abs(sa))
        # Gerr bounds the rounding error of G (n ulps for n terms); rounding errors of a sum
        # typically grow like √n, so iteration goes on until |G| reaches that typical floor,
        # or sits near the worst-case floor without halving any more
        typical = Gerr / np.sqrt(counts + 4.0)
        stalled = (np.abs(Ga) <= 8 * Gerr) & (np.abs(Ga) > 0.5 * self.prev_G[act])
        self.prev_G[act] = np.abs(Ga)
        done = (np.abs(Ga) <= typical) | stalled | (np.abs(s_new - sa) <= 4 * EPS * scale) \
            | (hi - lo <= 4 * EPS * scale)
        return s_new, s_log, s_lin, done


def _take_small_steps(outer, act, sg, idx, s_new, s_log, s_lin, done, p, logp, pa, logpa, dpa):
    """Segments whose Newton step δ is tiny take it without another evaluation: p moves by
    dp/ds·δ, and the neglected second-order term is O(p δ²) <= 1e-14 p (this saves the
    confirming pass of every segment). Updates ``p``/``logp`` in place; returns the mask."""
    sa = outer.s[act]
    scale = np.maximum(1.0, np.abs(sa))
    newton = (s_new == s_log) | (s_new == s_lin)
    step = np.where(done, 0.0, s_new - sa)
    close = ~done & newton & (np.abs(step) <= 1e-7 * scale)
    if close.any():
        delta = np.zeros(outer.s.size)
        delta[act[close]] = step[close]
        d_items = delta[sg]
        moved = d_items != 0
        # dp/ds / p: 0 where p underflowed to 0 (then dp/ds = 0 too, and p stays 0)
        rel = np.divide(dpa[moved], pa[moved], out=np.zeros(int(moved.sum())), where=pa[moved] > 0)
        dlogp = rel * d_items[moved]
        p[idx[moved]] = pa[moved] * (1.0 + dlogp)
        logp[idx[moved]] = logpa[moved] + dlogp
    return close


def solve(layout: Layout, response, *, maxiter: int = 200) -> Solution:
    """Find s per segment with Σ m p(s) = 1 by safeguarded Newton on log F(s).

    ``response.residual`` returns G = F − 1 and a bound on its rounding error. At small
    λ, F is nearly flat in s, so G must be accurate far below eps (summing p directly
    left 2e-10 relative error on tail probabilities at K = 1000, s = 3, λ = 1e-12).
    A finished segment keeps the s it was last evaluated at, so the p, log p stored for it
    are exact for that s; only unfinished segments are evaluated again.
    """
    seg, mult, n_seg = layout.seg, layout.mult, layout.n_seg
    outer = _Outer(layout, response)
    n_items = seg.size
    p, logp = np.empty(n_items), np.empty(n_items)
    idx = np.arange(n_items)
    for it in range(1, maxiter + 1):
        sg = seg[idx]
        pa, logpa, dpa = response.solve(idx, outer.s[sg])
        p[idx], logp[idx] = pa, logpa
        G, Gerr = response.residual(idx, sg, pa, logpa, outer.s[sg], layout)
        dF = np.bincount(sg, weights=mult[idx] * dpa, minlength=n_seg)
        act = np.flatnonzero(outer.active)
        s_new, s_log, s_lin, done = outer.step(act, G[act], dF[act], Gerr[act], layout.counts[act], it == 1)
        close = _take_small_steps(outer, act, sg, idx, s_new, s_log, s_lin, done, p, logp, pa, logpa, dpa)
        done = done | close
        outer.s[act] = np.where(done & ~close, outer.s[act], s_new)
        outer.active[act[done]] = False
        if not outer.active.any():
            break
        idx = np.flatnonzero(outer.active[seg])
    else:
        raise RuntimeError(f"softmax fixed point did not converge in {maxiter} iterations")
    logits = response.logits(np.arange(n_items), p, logp, outer.s[seg], layout)
    if hasattr(response, "polish"):
        logits = response.polish(logits, layout)
    logp, lse = log_softmax_segments(logits, layout)
    return Solution(p=np.exp(logp), logp=logp, logits=logits, s=lse, iterations=it)


def log_softmax_segments(z: np.ndarray, layout: Layout):
    """log p_j = z_j − log Σ_i m_i exp z_i per segment, and the log-partition.

    The largest logit's log-probability is −log1p(Σ_{others} m e^{z − z_max}), so a
    near-certain prediction keeps its tiny loss (−log p ≈ 1e-75) instead of rounding
    to zero or to a negative number.
    """
    seg, mult, n_seg = layout.seg, layout.mult, layout.n_seg
    live = mult > 0
    zmax = np.full(n_seg, -np.inf)
    np.maximum.at(zmax, seg[live], z[live])
    # one item per segment carries the maximum (the first, if tied)
    is_max = live & (z == zmax[seg])
    first = np.zeros(z.size, dtype=bool)
    cand = np.flatnonzero(is_max)
    _, keep = np.unique(seg[cand], return_index=True)
    first[cand[keep]] = True
    e = np.where(live, mult * np.exp(z - zmax[seg]), 0.0)
    rest = np.bincount(seg, weights=np.where(first, e - 1.0, e), minlength=n_seg)  # Σ − 1
    log1p_rest = np.log1p(rest)
    return z - zmax[seg] - log1p_rest[seg], zmax + log1p_rest


def exact_defect(q: np.ndarray, mult: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Σ m q − 1 per segment (segments are ``q[starts[i]:starts[i+1]]``), correctly rounded."""
    bounds = np.append(starts, q.size)
    terms = mult * q  # exact when mult is a small integer and q * mult does not round
    return np.array([math.fsum(np.append(terms[a:b], -1.0)) for a, b in zip(bounds[:-1], bounds[1:])])


def _two_product(a, b):
    """a·b = hi + lo exactly (Dekker's split; no FMA needed)."""
    split = 134217729.0  # 2^27 + 1
    hi = a * b

    def halves(v):
        t = split * v
        h = t - (t - v)
        return h, v - h

    ah, al = halves(a)
    bh, bl = halves(b)
    lo = ((ah * bh - hi) + ah * bl + al * bh) + al * bl
    return hi, lo


def ratio_defect(counts: np.ndarray, q: np.ndarray, total: np.ndarray, seg: np.ndarray, n_seg: int) -> np.ndarray:
    """Σ_j q_j − 1 per segment for q_j = fl(c_j / n), without a loop over segments.

    Since Σ_j c_j = n exactly, Σ_j q_j − 1 = Σ_j (q_j n − c_j)/n, and each q_j n − c_j is
    a rounding error recovered exactly by an error-free product; their sum has relative
    error ~n·eps, i.e. absolute ~eps² — far below what the solver needs.
    """
    hi, lo = _two_product(q, total)
    err = (hi - counts) + lo          # hi − c is exact (Sterbenz): hi and c agree to an ulp
    return np.bincount(seg, weights=err / total, minlength=n_seg)
