"""Closed forms of the deterministic bigram's learning curves against the numeric integrator."""

import doctest

import numpy as np
import pytest
import sympy as sp

from imbalance.symbolic import bigram as Bg
from imbalance.symbolic import dynamics as D
from imbalance.theory.dynamics import bigram_trajectory
from imbalance.zipf import zipf_pmf


def test_docstring_examples():
    result = doctest.testmod(D, extraglobs={"sp": sp}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_ode_equilibrium_is_the_t2_margin_equation():
    """dm/dt = 0 ⇔ m(eᵐ + K − 1) = κ'(K − 1), the T2 law (derived separately in symbolic.bigram)."""
    Kn = 5
    rate = D.gd_margin_ode()["dm_dt"].subs(D.K, Kn)
    eq = Bg.deterministic_margin_equation(Kn)
    m_t2 = sp.Symbol("m", real=True)
    kap = sp.Symbol("kappa", positive=True)
    # the T2 equation with κ = P r²/λ: m(eᵐ + K − 1) − κ K = 0; the ODE's zero times (eᵐ+K−1)/(ηλ) is its negative
    t2 = eq["equation"].subs({m_t2: D.m, kap: D.P * D.r**2 / D.lam})
    ours = sp.expand(-rate * (sp.exp(D.m) + Kn - 1) / (D.eta * D.lam))
    assert sp.simplify(ours - t2) == 0 or sp.simplify(ours + t2) == 0


def _margins(loss, K):
    """Invert ℓ = log(1 + (K − 1)e^{−m})."""
    return -np.log(np.expm1(loss) / (K - 1))


@pytest.mark.parametrize("lr", [0.05, 0.2])
def test_gd_time_to_margin_matches_integrator(lr):
    """Gradient descent, λ = 0: the step count at which the integrator reaches margin m agrees with
    t(m) = (eᵐ − 1 + (K−1)m)/(η P r² K) up to the Euler error of the discrete steps, which is
    O(η P r² · max rate) relative; bounded here by 3 η P_max r² K/(K − 1) (the largest step of m)."""
    K, r = 6, 1.3
    pi = zipf_pmf(K, 1.0)
    traj = bigram_trajectory(np.diag(pi), 0.0, steps=400, lr=lr, optimizer="sgd", r=r, eval_every=20)
    t_of_m = sp.lambdify((D.m, D.K, D.P, D.eta, D.r), D.gd_time_to_margin(), "numpy")
    m = _margins(traj.loss_per_token[1:], K)  # (n_eval − 1, K)
    t_pred = t_of_m(m, K, pi, lr, r)
    rel = np.abs(t_pred - traj.steps[1:, None]) / traj.steps[1:, None]
    bound = 3 * lr * pi.max() * r * r * K / (K - 1)
    assert rel.max() < bound, (rel.max(), bound)
    # and the step count is ∝ 1/(η π): the time to learn, from the closed form, per class
    t_learn = sp.lambdify((D.K, D.P, D.eta, D.r), D.gd_time_to_learn(), "numpy")(K, pi, lr, r)
    assert np.allclose(t_learn * pi, t_learn[0] * pi[0])


@pytest.mark.parametrize("B,lam", [(4, 0.05), (64, 0.2), (1, 0.01)])
def test_sign_margin_is_exact_for_mean_field_adamw(B, lam):
    """Mean-field AdamW with β = (0, 0), ε = 0 on the deterministic bigram moves every weight by ±ηρ:
    the discrete closed form m_t = 2rρ(1 − (1 − ηλ)^t)/λ holds to rounding at every logged step."""
    K, r, lr = 7, 0.8, 0.01
    pi = zipf_pmf(K, 1.2)
    traj = bigram_trajectory(np.diag(pi), lam, steps=300, lr=lr, optimizer="adamw", r=r, batch_size=B,
                             betas=(0.0, 0.0), eps=0.0, eval_every=30)
    out = D.sign_margin_discrete()
    rho = sp.lambdify((D.B, D.P), out["rho"], "numpy")(B, pi)
    sym_rho = sp.Symbol("rho", positive=True)
    margin = sp.lambdify((D.t, D.r, sym_rho, D.eta, D.lam), out["margin"], "numpy")
    m_pred = margin(traj.steps[1:, None], r, rho, lr, lam)
    loss_pred = np.log1p((K - 1) * np.exp(-m_pred))
    assert np.allclose(traj.loss_per_token[1:], loss_pred, rtol=1e-10, atol=0)


def test_sign_time_to_learn_is_nearly_frequency_free_when_tokens_are_in_every_batch():
    """Closed forms: GD's time to learn spreads like 1/π (factor π_1/π_K = K over a Zipf(1) law),
    mean-field AdamW's like 1/ρ(Bπ), which spans less than a factor 1.3 once Bπ_K ≥ 4."""
    Kn, Bn = 64, 4 * 64 * 5  # Bπ_K ≥ 4 for Zipf(1) over 64 classes
    pi = zipf_pmf(Kn, 1.0)
    assert Bn * pi.min() >= 4
    gd = sp.lambdify((D.K, D.P, D.eta, D.r), D.gd_time_to_learn(), "numpy")(Kn, pi, 0.1, 1.0)
    rho = np.sqrt(Bn * pi / (1 + (Bn - 1) * pi))
    sym_rho = sp.Symbol("rho", positive=True)
    sign = sp.lambdify((D.K, D.eta, D.r, sym_rho), D.sign_time_to_learn()["lam_to_0"], "numpy")(Kn, 0.1, 1.0, rho)
    assert gd.max() / gd.min() == pytest.approx(pi.max() / pi.min(), rel=1e-12)
    assert sign.max() / sign.min() < 1.3
