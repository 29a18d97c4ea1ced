"""T2/T3 in closed form: the deterministic bigram (context k is always followed by k)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_choice, as_distribution, as_lams, as_nonnegative, as_positive, as_positive_int, drop_lam_axis
from ..formulas import adamw_rho, kappa
from ._roots import increasing_root

__all__ = ["MarginLaw", "margin_law"]


@dataclass(frozen=True)
class MarginLaw:
    """Per-class equilibrium of the deterministic bigram (λ leading axis if an array).

    ``margins`` m_k = z_kk − z_kj (j ≠ k), ``loss_per_token`` ℓ_k = log(1 + (K−1)e^{−m_k}),
    ``target_prob`` p_k(k), ``logit_target``/``logit_other`` the two distinct logits of
    context k (z = r w), ``rho`` the AdamW gradient signal-to-noise ρ_k, λ-leading like the
    other fields (None for SGD).
    """

    lam: np.ndarray | float
    optimizer: str
    margins: np.ndarray
    loss_per_token: np.ndarray
    target_prob: np.ndarray
    logit_target: np.ndarray
    logit_other: np.ndarray
    aggregate_loss: np.ndarray | float
    token_balanced_loss: np.ndarray | float
    rho: np.ndarray | None


def _log1p_exp_neg(m, K):
    """log(1 + (K−1)e^{−m}), the loss of a class with margin m."""
    return np.log1p((K - 1) * np.exp(-m))


def _sgd_margins(kap, K):
    """Margins solving m (e^m + K − 1) = κ' (K − 1) for each κ' > 0 (T2), in log form

        g(m) = log m + m + log(1 + (K−1)e^{−m}) − log(κ'(K − 1)),

    increasing in m. Bracket: m ≤ κ'(K−1)/K (the margin of p_k = 1) and, from
    m = κ'(K−1)/(e^m + K − 1), m ≥ κ'(K−1)/(e^hi + K − 1)."""
    target = np.log(kap * (K - 1))
    hi = np.minimum(kap * (K - 1) / K, np.maximum(target, 1.0) + 1.0)
    hi = np.where(np.log(hi) + hi + _log1p_exp_neg(hi, K) >= target, hi, kap * (K - 1) / K)
    lo = kap * (K - 1) / (np.exp(np.minimum(hi, 700.0)) + K - 1)

    def g(x, idx):
        with np.errstate(over="ignore"):  # 1/x = inf for a subnormal x: Newton then stays put, bisection acts
            return (np.log(x) + x + _log1p_exp_neg(x, K) - target[idx],
                    1.0 / x + 1.0 / (1.0 + (K - 1) * np.exp(-x)))

    return increasing_root(g, lo, hi, np.sqrt(lo * hi))


def _wrong_share(m, K):
    """(a, c): a = 1 − p_k, the probability the context puts off its target, and
    c = a/(K − 1), the probability of each wrong token, for margin m."""
    a = (K - 1) * np.exp(-m) / (1 + (K - 1) * np.exp(-m))
    return a, a / (K - 1)


class _AdamWMarginEquation:
    """T3 per class: x − (rP/λ)[a/(s a + ε') + c/(s c + ε')] = 0, increasing in the margin x.

    ``s`` = √(P(1 + (B−1)P)/B), ``scale`` = rP/λ and ``eps_r`` = ε/r; a(x), c(x) from
    :func:`_wrong_share`. With ε' = 0 every ratio t/(s t) is 1/s (its limit at t → 0 too),
    so the equation is linear: x = 2·scale/s.
    """

    def __init__(self, s, scale, eps_r, K):
        self.s, self.scale, self.eps_r, self.K = s, scale, eps_r, K

    def __call__(self, x, idx):
        s, cc, e = self.s[idx], self.scale[idx], self.eps_r
        if e == 0:
            return x - 2 * cc / s, np.ones_like(x)
        a, c = _wrong_share(x, self.K)
        with np.errstate(divide="ignore", invalid="ignore"):
            rhs = cc * (a / (s * a + e) + c / (s * c + e))
        # d/dx [t/(s t + ε')] = ε'/(s t + ε')² · dt/dx, with da/dx = −a(1−a), dc/dx = da/dx/(K−1)
        da = -a * (1 - a)
        # (s t + ε')² = inf for a huge ε' (the term's limit, 0) or 0 where t underflows (a NaN
        # derivative: Newton is then refused and bisection acts)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            drhs = cc * (e / (s * a + e) ** 2 * da + e / (s * c + e) ** 2 * da / (self.K - 1))
        return x - rhs, 1.0 - drhs


def _sgd_law(pi, lams, r, seen):
    """(margins, target logit, other logit), each (L, K), under L2 (T2)."""
    K = pi.size
    kap = kappa(pi, lams, r).reshape(lams.size, K)             # (L, K) P r²/λ
    m = np.zeros(kap.shape)
    solve = seen & (kap > 0)                                   # κ = 0 (underflow): margin 0 exactly
    m[solve] = _sgd_margins((K / (K - 1)) * kap[solve], K)    # κ' = K π r²/((K − 1) λ)
    a = (K - 1) / (np.exp(np.minimum(m, 700.0)) + K - 1)       # (L, K) 1 − p_k
    return m, kap * a, -kap * a / (K - 1)


def _adamw_law(pi, lams, r, seen, B, eps):
    """(margins, target logit, other logit, ρ), each (L, K), under AdamW (T3)."""
    K, L = pi.size, lams.size
    P = np.broadcast_to(pi, (L, K))                            # (L, K)
    lam2 = lams[:, None]                                       # (L, 1)
    rho = np.broadcast_to(adamw_rho(pi, B), (L, K)).copy()     # (L, K)
    s = np.sqrt(P * (1 + (B - 1) * P) / B)                     # (L, K) √E g² per unit |a|, over r
    with np.errstate(over="ignore"):
        scale = r * P / lam2                                   # (L, K)
        hi = (2 * r * rho / lam2)[seen]                        # the ε → 0 margin bounds the root
    eps_r = eps / r
    m = np.zeros((L, K))
    if eps_r > 0:
        # with c = 1/(e^m + K − 1) <= e^{−m} the right side is at most scale·K c/ε', so the root
        # has m e^m <= scale·K/ε' and m <= W(scale·K/ε') <= log(1 + scale·K/ε')
        with np.errstate(divide="ignore"):  # scale = 0 (underflow): the margin is 0 and so is the bound
            hi = np.minimum(hi, np.logaddexp(0.0, np.log(scale[seen]) + np.log(K) - np.log(eps_r)))
    if not np.isfinite(hi).all():
        raise ValueError(f"the AdamW margin 2rρ/λ overflows float64 for r={r!r} and lam down to {lams.min()!r}")

    m[seen] = increasing_root(_AdamWMarginEquation(s[seen], scale[seen], eps_r, K),
                              np.zeros_like(hi), hi * (1 + 1e-12), hi)
    if eps_r > 0 and m.max() > 708:  # e^{−m} is no longer a normal float64: the equation cannot be resolved
        raise ValueError(f"margins beyond float64's exp range (m = {m.max():.0f}) for r={r!r}, lam down to "
                         f"{lams.min()!r}, eps={eps!r}")
    a, c = _wrong_share(m, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_a = a / (s * a + eps_r) if eps_r > 0 else 1.0 / s
        ratio_c = c / (s * c + eps_r) if eps_r > 0 else 1.0 / s
        zt = np.where(seen, scale * ratio_a, 0.0)
        zo = np.where(seen, -scale * ratio_c, 0.0)
    return m, zt, zo, rho


def margin_law(pi, lam, *, r=1.0, optimizer="sgd", batch_size=None, eps=1e-8) -> MarginLaw:
    """Margins and losses of the deterministic bigram, context k → token k, P(k) = π_k.

    SGD/L2 (T2): m solves m (e^m + K − 1) = κ' (K − 1), κ' = K π r² / ((K − 1) λ).
    AdamW (T3): by symmetry context k has two logits; with a = 1 − p_k,
    s = √(π(1 + (B−1)π)/B) and ε' = ε/r,
        m = (r π / λ) [a/(s a + ε') + (a/(K−1))/(s a/(K−1) + ε')],
    which for ε → 0 is m = 2 r ρ / λ with ρ = √(Bπ / (1 + (B−1)π)) (``imbalance.formulas.adamw_rho``).
    Each is one increasing scalar equation per class, solved by safeguarded Newton.
    Agrees with ``bigram_equilibrium(np.diag(pi), ...)``, which solves the full system
    (``proofs/T2_bigram.md``, ``proofs/T3_adamw.md``).
    """
    pi = as_distribution(pi, "pi")
    pi = pi / pi.sum()
    lams, scalar = as_lams(lam)
    r = as_positive(r, "r")
    optimizer = as_choice(optimizer, "optimizer", {"sgd", "adamw"})
    eps = as_nonnegative(eps, "eps")
    if optimizer == "adamw" and batch_size is None:
        raise ValueError("batch_size is required for optimizer='adamw' (minibatch size B), got batch_size=None")
    if batch_size is not None:
        batch_size = as_positive_int(batch_size, "batch_size")
    with np.errstate(over="ignore"):
        if not np.isfinite(eps / r):
            raise ValueError(f"eps/r overflows float64 for eps={eps!r} and r={r!r}")
    K = pi.size
    seen = np.broadcast_to(pi > 0, (lams.size, K))            # (L, K)
    rho = None
    if optimizer == "sgd":
        m, zt, zo = _sgd_law(pi, lams, r, seen)
    else:
        m, zt, zo, rho = _adamw_law(pi, lams, r, seen, float(batch_size), eps)
    loss = _log1p_exp_neg(m, K)
    fields = dict(margins=m, loss_per_token=loss, target_prob=1.0 / (1.0 + (K - 1) * np.exp(-m)),
                  logit_target=zt, logit_other=zo, aggregate_loss=loss @ pi, token_balanced_loss=loss.mean(axis=1))
    if rho is not None:
        fields["rho"] = rho
    fields = drop_lam_axis(fields, scalar)
    return MarginLaw(lam=float(lams[0]) if scalar else lams, optimizer=optimizer, rho=fields.pop("rho", None),
                     **fields)
