"""T2/T3 in closed form: the deterministic bigram (context k is always followed by k)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import as_choice, as_distribution, as_lams, as_nonnegative, as_positive, as_positive_int
from ._roots import increasing_root

__all__ = ["MarginLaw", "margin_law"]


@dataclass(frozen=True)
class MarginLaw:
    """Per-class equilibrium of the deterministic bigram (λ leading axis if an array).

    ``margins`` m_k = z_kk − z_kj (j ≠ k), ``loss_per_token`` ℓ_k = log(1 + (K−1)e^{−m_k}),
    ``target_prob`` p_k(k), ``logit_target``/``logit_other`` the two distinct logits of
    context k (z = r w), ``rho`` the AdamW gradient signal-to-noise ρ_k (None for SGD).
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


def margin_law(pi, lam, *, r=1.0, optimizer="sgd", batch_size=None, eps=1e-8) -> MarginLaw:
    """Margins and losses of the deterministic bigram, context k → token k, P(k) = π_k.

    SGD/L2 (T2): m solves m (e^m + K − 1) = κ' (K − 1), κ' = K π r² / ((K − 1) λ).
    AdamW (T3): by symmetry context k has two logits; with a = 1 − p_k,
    s = √(π(1 + (B−1)π)/B) and ε' = ε/r,
        m = (r π / λ) [a/(s a + ε') + (a/(K−1))/(s a/(K−1) + ε')],
    which for ε → 0 is m = 2 r ρ / λ with ρ = √(Bπ / (1 + (B−1)π)).
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
    if optimizer == "adamw":
        if batch_size is None:
            raise ValueError("batch_size is required for optimizer='adamw' (minibatch size B), got batch_size=None")
    if batch_size is not None:
        batch_size = as_positive_int(batch_size, "batch_size")
    K = pi.size
    P = np.broadcast_to(pi, (lams.size, K))                   # (L, K)
    lam2 = lams[:, None]                                       # (L, 1)
    seen = P > 0
    m = np.zeros(P.shape)
    rho = None
    if optimizer == "sgd":
        # log-form: log m + m + log1p((K−1)e^{−m}) = log(κ'(K−1)), increasing in m
        kap = (K * P * r * r / ((K - 1) * lam2))[seen]
        target = np.log(kap * (K - 1))
        hi = np.minimum(kap * (K - 1) / K, np.maximum(target, 1.0) + 1.0)
        hi = np.where(np.log(hi) + hi + _log1p_exp_neg(hi, K) >= target, hi, kap * (K - 1) / K)
        lo = kap * (K - 1) / (np.exp(np.minimum(hi, 700.0)) + K - 1)

        def g(x, idx):
            return (np.log(x) + x + _log1p_exp_neg(x, K) - target[idx],
                    1.0 / x + 1.0 / (1.0 + (K - 1) * np.exp(-x)))

        m[seen] = increasing_root(g, lo, hi, np.sqrt(lo * hi))
        kappa = P * r * r / lam2
        a = (K - 1) / (np.exp(np.minimum(m, 700.0)) + K - 1)     # 1 − p_k
        zt, zo = kappa * a, -kappa * a / (K - 1)
    else:
        B = float(batch_size)
        s = np.sqrt(P * (1 + (B - 1) * P) / B)
        rho = np.sqrt(B * pi / (1 + (B - 1) * pi))
        epsr = eps / r
        Ps, ss = P[seen], s[seen]
        cst = (r / np.broadcast_to(lam2, P.shape))[seen] * Ps

        def parts(x):
            a = (K - 1) * np.exp(-x) / (1 + (K - 1) * np.exp(-x))
            c = a / (K - 1)
            return a, c

        def g(x, idx):
            a, c = parts(x)
            sa, cc, ea = ss[idx], cst[idx], epsr
            if ea == 0:  # t/(s t) = 1/s for every t > 0, its limit at t -> 0 too
                return x - 2 * cc / sa, np.ones_like(x)
            rhs = cc * (a / (sa * a + ea) + c / (sa * c + ea))
            # d/dx [t/(s t + ε')] = ε'/(s t + ε')² · dt/dx, with da/dx = −a(1−a), dc/dx = da/dx/(K−1)
            da = -a * (1 - a)
            drhs = cc * (ea / (sa * a + ea) ** 2 * da + ea / (sa * c + ea) ** 2 * da / (K - 1))
            return x - rhs, 1.0 - drhs

        hi = 2 * r * rho[None, :].repeat(lams.size, 0)[seen] / np.broadcast_to(lam2, P.shape)[seen]
        m[seen] = increasing_root(g, np.zeros_like(hi), hi * (1 + 1e-12), hi)
        a, c = parts(m)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_a = a / (s * a + epsr) if epsr > 0 else 1.0 / s
            ratio_c = c / (s * c + epsr) if epsr > 0 else 1.0 / s
            zt = np.where(seen, (r * P / lam2) * ratio_a, 0.0)
            zo = np.where(seen, -(r * P / lam2) * ratio_c, 0.0)
    loss = _log1p_exp_neg(m, K)
    fields = dict(margins=m, loss_per_token=loss, target_prob=1.0 / (1.0 + (K - 1) * np.exp(-m)),
                  logit_target=zt, logit_other=zo, aggregate_loss=loss @ pi, token_balanced_loss=loss.mean(axis=1))
    if scalar:
        fields = {k: (float(v[0]) if v.ndim == 1 else v[0]) for k, v in fields.items()}
    return MarginLaw(lam=float(lams[0]) if scalar else lams, optimizer=optimizer, rho=rho, **fields)
