"""T2/T3 closed-form margins of the deterministic bigram (imbalance.theory.margin).

The full-system check (``margin_law`` against ``bigram_equilibrium(np.diag(pi))``) is in
test_bigram.py; here each class's scalar equation is solved independently by scipy's brentq
from its statement in proofs/T2_bigram.md and proofs/T3_adamw.md, and the result's shape
conventions are checked.
"""

import numpy as np
import pytest
from scipy.optimize import brentq

from imbalance import margin_law, zipf_pmf
from imbalance.formulas import adamw_rho

PI = zipf_pmf(12, 1.3)


@pytest.mark.parametrize("lam,r", [(1e-3, 1.0), (0.05, 2.0), (3.0, 0.5)])
def test_sgd_margins_solve_the_scalar_equation(lam, r):
    K = PI.size
    ml = margin_law(PI, lam, r=r)
    for k in range(K):
        kap = K * PI[k] * r * r / ((K - 1) * lam)
        m = brentq(lambda x: x * (np.exp(x) + K - 1) - kap * (K - 1), 0.0, kap * (K - 1) / K + 1,
                   xtol=1e-300, rtol=4 * np.finfo(float).eps)
        assert ml.margins[k] == pytest.approx(m, rel=1e-12)
        assert ml.loss_per_token[k] == pytest.approx(np.log1p((K - 1) * np.exp(-m)), rel=1e-12)


@pytest.mark.parametrize("lam,eps,B", [(0.1, 1e-8, 64), (1.0, 1e-3, 8), (0.02, 1e-6, 512)])
def test_adamw_margins_solve_the_two_logit_equation(lam, eps, B):
    K, r = PI.size, 1.0
    ml = margin_law(PI, lam, r=r, optimizer="adamw", batch_size=B, eps=eps)
    for k in range(K):
        P = PI[k]
        s = np.sqrt(P * (1 + (B - 1) * P) / B)

        def g(m):
            a = (K - 1) / (np.exp(m) + K - 1)          # 1 − p_k
            c = a / (K - 1)                             # each other token's probability
            return m - (r * P / lam) * (a / (s * a + eps / r) + c / (s * c + eps / r))

        hi = 2 * r * adamw_rho(P, B) / lam
        m = brentq(g, 0.0, hi * (1 + 1e-9), xtol=1e-300, rtol=4 * np.finfo(float).eps)
        assert ml.margins[k] == pytest.approx(m, rel=1e-10)


def test_fields_are_lambda_leading():
    lams = [0.01, 0.1, 1.0]
    for opt in ("sgd", "adamw"):
        vec = margin_law(PI, lams, optimizer=opt, batch_size=16)
        for field in ("margins", "loss_per_token", "target_prob", "logit_target", "logit_other"):
            assert getattr(vec, field).shape == (3, PI.size)
        assert vec.aggregate_loss.shape == (3,)
        one = margin_law(PI, lams[1], optimizer=opt, batch_size=16)
        assert isinstance(one.aggregate_loss, float) and one.margins.shape == (PI.size,)
        np.testing.assert_allclose(vec.margins[1], one.margins, rtol=1e-14)
    rho = margin_law(PI, lams, optimizer="adamw", batch_size=16).rho
    assert rho.shape == (3, PI.size)
    np.testing.assert_array_equal(rho[0], adamw_rho(PI, 16))
    assert margin_law(PI, lams).rho is None


def test_extreme_decays_stay_finite():
    ml = margin_law(PI, [1e-300, 1e300], optimizer="adamw", batch_size=8)
    assert np.isfinite(ml.margins).all() and np.isfinite(ml.loss_per_token).all()


@pytest.mark.parametrize("kwargs,name", [
    (dict(pi=[0.5, 0.6], lam=0.1), "pi"), (dict(pi=PI, lam=-1.0), "lam"), (dict(pi=PI, lam=0.1, r=0.0), "r"),
    (dict(pi=PI, lam=0.1, optimizer="adam"), "optimizer"), (dict(pi=PI, lam=0.1, optimizer="adamw"), "batch_size"),
    (dict(pi=PI, lam=0.1, optimizer="adamw", batch_size=0), "batch_size"),
    (dict(pi=PI, lam=0.1, eps=-1e-8), "eps"), (dict(pi=PI, lam=1e-300, r=1e300), "kappa"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        margin_law(**kwargs)
