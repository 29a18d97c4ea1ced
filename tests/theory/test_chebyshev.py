"""The Runge–Kutta–Chebyshev integrator against exact solutions of stiff test flows."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from imbalance.theory.chebyshev import _coefficients, rkc_integrate, spectral_radius, stages_for


def test_stiff_linear_flow_matches_its_exponential():
    """ẏ = −a ∘ y with rates a from 1e-3 to 1e3 (stiffness 1e6 over t = 50): the solution at every
    logged time matches exp(−a t) to the requested tolerance, in far fewer evaluations than
    explicit Euler's stability limit (t·max a / 2 = 25,000)."""
    a = np.logspace(-3, 3, 200)
    t = np.linspace(0.0, 50.0, 11)
    seen = []
    y, n = rkc_integrate(lambda y: -a * y, np.ones(200), t, rtol=1e-4, atol=1e-9, record=lambda y: seen.append(y))
    exact = np.exp(-np.outer(t, a))  # (11, 200)
    np.testing.assert_allclose(np.array(seen), exact, atol=1e-4, rtol=1e-3)
    assert n < 25_000 / 2


def test_nonlinear_flow_matches_an_implicit_reference():
    """ẏ = −a y − y³ + 0.1 against scipy's Radau (implicit, tight tolerance): second order, so a
    10× tighter rtol cuts the error by roughly 10^(2/3) or more."""
    a = np.logspace(-2, 2, 8)
    f = lambda y: -a * y - y ** 3 + 0.1  # noqa: E731
    ref = solve_ivp(lambda t, y: f(y), (0, 20), np.ones(8), method="Radau", rtol=1e-10, atol=1e-13,
                    jac=lambda t, y: np.diag(-a - 3 * y * y)).y[:, -1]
    errs = [np.abs(rkc_integrate(f, np.ones(8), [0.0, 20.0], rtol=tol, atol=1e-10)[0] - ref).max()
            for tol in (1e-3, 1e-4)]
    assert errs[0] < 1e-3 and errs[1] < errs[0] / 3, errs


@pytest.mark.parametrize("s", [2, 3, 7, 20])
def test_stability_polynomial_is_second_order_and_damped(s):
    """For ẏ = λy one step is R(hλ) y: R(z) = 1 + z + z²/2 + O(z³) (second order) and |R| < 1 on
    the real interval [−β(s), −0.01] the stage rule promises (β from ``stages_for``)."""
    def R(z):
        mu, nu, mut, gam = _coefficients(s)
        prev2, prev = 1.0, 1.0 + mut[1] * z
        for j in range(2, s + 1):
            prev2, prev = prev, (1 - mu[j] - nu[j]) + mu[j] * prev + nu[j] * prev2 + mut[j] * z * prev + gam[j] * z
        return prev
    z = 1e-3
    assert abs(R(-z) - (1 - z + z * z / 2)) < 10 * z ** 3
    beta = max(h for h in np.linspace(0.01, 2 * s * s, 4000) if stages_for(h) <= s)
    zs = -np.linspace(0.01, beta, 2000)
    assert np.abs([R(x) for x in zs]).max() < 1.0


def test_power_iteration_finds_the_largest_rate():
    a = np.linspace(0.1, 7.0, 30)
    rho, _ = spectral_radius(lambda y: -a * y, np.ones(30), -a, np.ones(30), iters=200)
    assert abs(rho - 7.0) < 1e-3 * 7.0


def test_power_iteration_stops_when_the_estimate_settles():
    """Rates 0.1 … 7 with one at 7 and the next at 3.5: with ``tol`` the iteration stops once two
    estimates agree to 1e-3, in fewer evaluations than ``iters``, and within 1 % of 7."""
    a = np.concatenate([np.linspace(0.1, 3.5, 29), [7.0]])
    calls = []

    def f(y):
        calls.append(1)
        return -a * y
    rho, _ = spectral_radius(f, np.ones(30), -a, np.ones(30), iters=200, tol=1e-3)
    assert len(calls) < 200 and abs(rho - 7.0) < 0.01 * 7.0, (len(calls), rho)


def test_power_iteration_with_a_float32_flow_needs_float32_steps():
    """f computed in float32 (a symmetric linear flow, rates 0.1 … 7): with the finite-difference
    step of float32 (``eps``) ρ matches the float64 flow's; the float64 step would be rounded away."""
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.standard_normal((60, 60)))
    A = (Q * np.linspace(0.1, 7.0, 60)) @ Q.T
    y = rng.normal(0, 0.3, 60)
    v0 = rng.standard_normal(60)

    def f64(x):
        return -A @ x

    def f32(x):
        return -(A.astype(np.float32) @ x.astype(np.float32)).astype(np.float64)

    exact, _ = spectral_radius(f64, y, f64(y), v0, iters=200)
    rho, _ = spectral_radius(f32, y, f32(y), v0, iters=200, eps=np.finfo(np.float32).eps)
    assert abs(exact - 7.0) < 1e-3 * 7.0
    assert abs(rho - exact) < 1e-3 * exact, (rho, exact)


@pytest.mark.parametrize("eps", [0.0, -1e-7, 1.0, np.nan, "x", True])
def test_bad_precision_is_named(eps):
    with pytest.raises(ValueError, match="eps"):
        spectral_radius(lambda y: -y, np.ones(3), -np.ones(3), np.ones(3), eps=eps)
    with pytest.raises(ValueError, match="eps"):
        rkc_integrate(lambda y: -y, np.ones(3), [0.0, 1.0], eps=eps)
    with pytest.raises(ValueError, match="tol"):
        spectral_radius(lambda y: -y, np.ones(3), -np.ones(3), np.ones(3), tol=eps)
