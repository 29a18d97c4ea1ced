"""Unconstrained-features model (UFM) with weight decay, solved exactly (T5).

    min_{W, H, b}  Σ_k π_k CE(W h_k + b, k) + (λ_W/2)‖W‖² + (λ_H/2) Σ_k π_k ‖h_k‖²

(Fang et al. 2021, PNAS, eq. 2 with weight decay; Dang et al. 2024, ICML; the
proposition of Pinto et al. 2024 is stated in this model). Features of one class collapse
to their mean (proofs/T5_unconstrained_features.md, step 1), and by the variational
identity min_{WH=Z} (λ_W/2)‖W‖² + (λ_H/2)‖H diag(π)^{1/2}‖² = √(λ_Wλ_H)‖Z diag(π)^{1/2}‖_*
the problem equals the convex program solved by :mod:`imbalance.theory.nuclear`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._progress import progress_bar
from .._validate import allocation, as_distribution, as_positive, as_positive_int, as_real_array
from .collapse import minority_collapse_threshold
from .nuclear import as_rtol, broadcast_lams, check_penalty_range, solve_path

__all__ = ["UFMEquilibrium", "ufm_equilibrium", "two_group_pi", "MinorityCosine", "minority_cosine",
           "minority_collapse_threshold"]


@dataclass(frozen=True)
class UFMEquilibrium:
    """Global minimiser of the UFM (T5). With a 1-D λ path every array gains a leading λ axis.

    ``logits[k]`` = W h_k + b (logits seen by a sample of class k); ``W`` (K × K) has the
    classifiers as rows, ``H`` (K × K) the collapsed features as columns, factored in the
    balanced way that attains the variational identity (unique up to a rotation given Z, so
    norms and cosines are functions of Z; Z itself is unique without a bias, proofs/T5 Step 6).
    ``classifier_cosine[c, c']`` is NaN where a classifier is 0.
    ``gap`` bounds objective − optimum (Fenchel duality); ``dual_ratio`` = ‖∇‖₂/μ ≤ 1 + rtol-ish.

    ``optimizer="adamw"``: the AdamW equilibrium (T10) selected from the initialisation, ``W``
    (K × d) and ``H`` (d × K·m, one column per feature) the factors themselves, ``logits`` one row
    per feature; certificate ``residual`` (max |F| of the stationarity map), ``flow_time``,
    ``occurrences_per_window`` = B π_k/(1 − β₂); the L2 certificates are NaN there.
    """

    pi: np.ndarray
    lam_w: np.ndarray | float
    lam_h: np.ndarray | float
    logits: np.ndarray
    bias: np.ndarray
    W: np.ndarray
    H: np.ndarray
    loss_per_token: np.ndarray
    aggregate_loss: np.ndarray | float
    token_balanced_loss: np.ndarray | float
    classifier_norms: np.ndarray
    feature_norms: np.ndarray
    classifier_cosine: np.ndarray
    objective: np.ndarray | float
    gap: np.ndarray | float
    rel_gap: np.ndarray | float
    dual_ratio: np.ndarray | float
    optimizer: str = "l2"
    residual: np.ndarray | float = np.nan
    flow_time: np.ndarray | float = np.nan
    batch_size: int | None = None
    occurrences_per_window: np.ndarray | None = None


def _cosine(W):
    nrm = np.linalg.norm(W, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        C = (W @ W.T) / np.outer(nrm, nrm)
    C[(nrm == 0)[:, None] | (nrm == 0)[None, :]] = np.nan
    return np.clip(C, -1.0, 1.0)


def ufm_equilibrium(pi, lam_w, lam_h, *, bias: bool = False, rtol: float = 1e-9, optimizer: str = "l2",
                    **adamw) -> UFMEquilibrium:
    """Exact global minimiser of the weight-decayed UFM for class frequencies ``pi`` (T5), or
    with ``optimizer="adamw"`` its AdamW equilibrium (T10).

    Solves min_Z Σ_k π_k CE(z_k + b, k) + √(λ_Wλ_H) ‖diag(π)^{1/2} Z‖_* (rows z_k = W h_k)
    to a relative duality gap ``rtol`` and returns the balanced factorisation
    W = c B, H = c⁻¹ Aᵀ diag(π)^{-1/2}, c = (λ_H/λ_W)^{1/4}, where diag(π)^{1/2} Z = A Bᵀ is
    balanced (proofs/T5_unconstrained_features.md, Theorem T5). Every π_k must be ≥ 1e-300.
    ``lam_w``, ``lam_h``: scalars or 1-D arrays (broadcast; λ becomes the leading axis), with
    √(λ_Wλ_H) in :data:`imbalance.theory.nuclear.MU_RANGE` = [1e-5, 1e12] (below it the objective
    of this separable problem vanishes and its relative gap cannot be certified in float64);
    ``rtol`` in [1e-13, 1).

    ``optimizer="adamw"`` (no bias): decoupled decays λ_W of the classifiers and λ_H of *every*
    feature (not the π-weighted penalty above); keywords ``init`` = (W0 (K, d), H0 (K·m, d)) the
    training initialisation (required), ``samples_per_class`` m, ``batch_size``, ``eps``,
    ``betas`` and the solver options of :func:`imbalance.theory.adamw_shared.ufm_adamw_equilibrium`.
    """
    if optimizer == "adamw":
        return _ufm_adamw(pi, lam_w, lam_h, bias, adamw)
    if optimizer != "l2":
        raise ValueError(f"optimizer must be 'l2' or 'adamw', got optimizer={optimizer!r}")
    if adamw:
        raise ValueError(f"{sorted(adamw)} apply to optimizer='adamw' only, got optimizer={optimizer!r}")
    pi = as_distribution(pi, "pi")
    rtol = as_rtol(rtol)
    if (pi <= 0).any():
        i = int(np.flatnonzero(pi <= 0)[0])
        raise ValueError(f"pi must be > 0 for every class (a class without samples has no feature), "
                         f"got pi[{i}]={pi[i]!r}")
    if (pi < 1e-300).any():  # √π scales the solver's rows, which must stay in [1e-150, 1e150]
        i = int(np.flatnonzero(pi < 1e-300)[0])
        raise ValueError(f"pi must be >= 1e-300 for every class, got pi[{i}]={pi[i]!r}")
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"bias must be True or False, got bias={bias!r}")
    lw, lh, scalar = broadcast_lams(lam_w, "lam_w", lam_h, "lam_h")
    check_penalty_range(lw, "lam_w", lh, "lam_h")
    mus = np.sqrt(lw * lh)
    sols = solve_path(sp.diags(pi).tocsr(), mus, row_scale=np.sqrt(pi), bias=bool(bias), rtol=rtol)
    rows = [_l2_fields(sol, a, h, pi) for sol, a, h in zip(sols, lw, lh)]
    out = {k: (rows[0][i] if scalar else np.asarray([r[i] for r in rows])) for i, k in enumerate(_FIELDS)}
    return UFMEquilibrium(pi=pi, lam_w=float(lw[0]) if scalar else lw, lam_h=float(lh[0]) if scalar else lh, **out)


_FIELDS = ("logits", "bias", "W", "H", "loss_per_token", "aggregate_loss", "token_balanced_loss",
           "classifier_norms", "feature_norms", "classifier_cosine", "objective", "gap", "rel_gap", "dual_ratio")


def _l2_fields(sol, a, h, pi):
    """The result fields (in ``_FIELDS`` order) of one nuclear-norm solution of the UFM."""
    K = pi.size
    Z = sol.logits  # (K, K): row k = logits of class-k features, bias included
    m = Z.max(axis=1)
    lse = m + np.log(np.exp(Z - m[:, None]).sum(axis=1))
    loss = lse - np.diag(Z)
    c = (h / a) ** 0.25
    r = sol.left.shape[1]
    W = np.zeros((K, K))
    H = np.zeros((K, K))
    W[:, :r] = c * sol.right  # (K, r) classifiers as rows
    H[:r, :] = (sol.left / (c * np.sqrt(pi)[:, None])).T  # (r, K) features as columns
    return (Z, sol.bias, W, H, loss, float(pi @ loss), float(loss.mean()), np.linalg.norm(W, axis=1),
            np.linalg.norm(H, axis=0), _cosine(W), sol.objective, sol.gap, sol.rel_gap, sol.dual_ratio)


def _ufm_adamw(pi, lam_w, lam_h, bias, adamw):
    """``optimizer="adamw"``: :func:`~imbalance.theory.adamw_shared.ufm_adamw_equilibrium` in the
    L2 result type (no bias; L2 certificates NaN)."""
    from .adamw_shared import ufm_adamw_equilibrium

    if bias is not False:
        raise ValueError(f"bias is not supported with optimizer='adamw' (the AdamW UFM has no bias), got bias={bias!r}")
    lw, lh, scalar = broadcast_lams(lam_w, "lam_w", lam_h, "lam_h")
    eq = ufm_adamw_equilibrium(pi, lw[0] if scalar else lw, lam_h=lh[0] if scalar else lh, **adamw)
    W, H = eq.W, eq.E  # (…, K, d), (…, d, K·m)
    logits = np.swapaxes(H, -1, -2) @ np.swapaxes(W, -1, -2)  # (…, K·m, K)
    K = W.shape[-2]
    nan = np.nan if scalar else np.full(lw.shape, np.nan)
    cosine = _cosine(W) if scalar else np.stack([_cosine(w) for w in W])
    return UFMEquilibrium(
        pi=eq.token_frequency, lam_w=eq.lam, lam_h=eq.lam_e, logits=logits, bias=np.zeros(logits.shape[:-2] + (K,)),
        W=W, H=H, loss_per_token=eq.loss_per_token, aggregate_loss=eq.aggregate_loss,
        token_balanced_loss=eq.token_balanced_loss, classifier_norms=eq.unembedding_norms,
        feature_norms=eq.embedding_norms, classifier_cosine=cosine, objective=nan, gap=nan, rel_gap=nan,
        dual_ratio=nan, optimizer="adamw", residual=eq.residual, flow_time=eq.flow_time, batch_size=eq.batch_size,
        occurrences_per_window=eq.occurrences_per_window)


def two_group_pi(k_major: int, k_minor: int, ratio: float) -> np.ndarray:
    """Two-group frequencies (Fang et al. 2021, §3): ``k_major`` classes with mass ∝ ``ratio``
    and ``k_minor`` classes with mass ∝ 1 (imbalance ratio R = ``ratio`` ≥ 1)."""
    ka = as_positive_int(k_major, "k_major")
    kb = as_positive_int(k_minor, "k_minor")
    R = as_positive(ratio, "ratio")
    if R < 1:
        raise ValueError(f"ratio must be >= 1, got ratio={R!r}")
    name, size = ("k_major", ka) if ka >= kb else ("k_minor", kb)
    with allocation(name, size):
        w = np.concatenate([np.full(ka, R), np.ones(kb)])
    return w / w.sum()


@dataclass(frozen=True)
class MinorityCosine:
    """Minority collapse at the UFM optimum of the two-group family (Fang et al. 2021).

    ``cosine`` is the cosine between the minority classifiers K_A and K_A + 1 (NaN where they
    are 0); ``minority_norm`` and ``majority_norm`` are ‖w‖ of a minority and of a majority
    classifier. Each is shaped (L, *ratio.shape) for a 1-D λ path (λ leading), ratio.shape for
    scalar λ (a float when ``ratio`` is a scalar too).
    """

    k_major: int
    k_minor: int
    ratio: np.ndarray | float
    lam_w: np.ndarray | float
    lam_h: np.ndarray | float
    cosine: np.ndarray | float
    minority_norm: np.ndarray | float
    majority_norm: np.ndarray | float


def minority_cosine(k_major: int, k_minor: int, ratio, lam_w, lam_h, *, bias: bool = False,
                    rtol: float = 1e-9) -> MinorityCosine:
    """Cosine between two minority classifiers and the minority/majority classifier norms
    at the UFM optimum of the two-group family (Fang et al. 2021, minority collapse).

    ``ratio``: a scalar or an array of imbalance ratios R ≥ 1; ``lam_w``, ``lam_h``: scalars or
    1-D arrays (broadcast; λ becomes the leading axis of every field), ``bias``, ``rtol`` as in
    :func:`ufm_equilibrium`. Returns a :class:`MinorityCosine` (it replaces the earlier tuple
    ``(cosine, minority_norm, majority_norm)``: read ``.cosine``, ``.minority_norm``,
    ``.majority_norm``). Without a bias the optimum is unique (proofs/T5, Step 6) and symmetric
    within the minority group, so every minority pair has this cosine; with a bias the
    probabilities are unique but Z* is not proven unique, and the cosine is that of the
    solver's optimum — whether the pair is merged (cosine 1) is the same for every optimum when
    π_B ≠ λ_Wλ_H (T8). The pair (K_A, K_A + 1) is reported.
    """
    k_major = as_positive_int(k_major, "k_major")
    k_minor = as_positive_int(k_minor, "k_minor")
    if k_minor < 2:
        raise ValueError(f"k_minor must be >= 2 to define a minority cosine, got k_minor={k_minor}")
    lw, lh, scalar = broadcast_lams(lam_w, "lam_w", lam_h, "lam_h")
    as_rtol(rtol)
    ratio = as_real_array(ratio, "ratio", "a number or an array of ratios >= 1")
    R = ratio.ravel()
    if (R > 1e200).any():  # the minority frequency 1/(k_major·ratio + k_minor) must stay >= 1e-300
        raise ValueError(f"ratio must be <= 1e200, got ratio={float(R[R > 1e200][0])!r}")
    fields = {k: np.empty((lw.size, R.size)) for k in ("cosine", "minority_norm", "majority_norm")}  # (L, n)
    for j, r in enumerate(progress_bar(R, desc="minority cosine (UFM solves)")):
        eq = ufm_equilibrium(two_group_pi(k_major, k_minor, float(r)), lw, lh, bias=bias, rtol=rtol)
        fields["cosine"][:, j] = eq.classifier_cosine[:, k_major, k_major + 1]  # (L,)
        fields["minority_norm"][:, j] = eq.classifier_norms[:, k_major]  # (L,)
        fields["majority_norm"][:, j] = eq.classifier_norms[:, 0]  # (L,)
    shaped = {k: v.reshape(lw.size, *ratio.shape) for k, v in fields.items()}  # (L, *ratio.shape)
    if scalar:
        shaped = {k: (float(v[0]) if ratio.ndim == 0 else v[0]) for k, v in shaped.items()}
    return MinorityCosine(k_major=k_major, k_minor=k_minor, ratio=float(ratio) if ratio.ndim == 0 else ratio,
                          lam_w=float(lw[0]) if scalar else lw, lam_h=float(lh[0]) if scalar else lh, **shaped)
