"""T4 (norm bound), T5/T7 (variational identities) and T6 (scaled decay) derivations."""

import pytest
import sympy as sp

from imbalance.symbolic import factored as F
from imbalance.symbolic import features as T4
from imbalance.symbolic import mitigation as M
from imbalance.symbolic import ufm as U5


@pytest.mark.parametrize("K,d,y", [(2, 1, 0), (2, 2, 1), (3, 2, 2)])
def test_per_sample_gradient_is_residual_times_feature(K, d, y):
    out = T4.per_sample_gradients(K, d, y)
    assert out["weight_residual"] == sp.zeros(K, d)
    assert out["bias_residual"] == sp.zeros(K, 1)


def test_abs_residual_identity_both_labels():
    assert T4.abs_residual_identity()["cases"] == [0, 0]


def test_adamw_bound_from_variance():
    # λ|w| = |E g|/(√E g² + ε) ≤ 1 because E g² = (E g)² + Var g with Var g ≥ 0 (T3 moments)
    var = T4.adamw_weight_bound()["variance"]
    from imbalance.symbolic import adamw as A
    a, c = sp.symbols("a c", positive=True)
    assert var.subs({A.P: 1 / (1 + a), A.q: 1 / (1 + c)}).is_nonnegative


def test_ufm_scalar_identity_and_certificate():
    out = U5.scalar_variational_identity()
    assert out["gap"] == 0 and out["certificate"] == 0
    # at the argmin the two penalty terms are equal (balanced factorisation)
    w, z = sp.symbols("w z", positive=True)
    pi = sp.Symbol("pi", positive=True)
    ws = out["argmin"]
    assert sp.simplify(U5.lam_W * ws**2 - U5.lam_H * pi * (z / ws) ** 2) == 0


@pytest.mark.parametrize("n", [2, 3])
def test_ufm_diagonal_identity(n):
    assert U5.diagonal_variational_value(n)["gap"] == 0


def test_factored_untied_and_tied():
    out = F.untied_scalar_identity()
    assert out["gap"] == 0 and out["certificate"] == 0
    for d, V in [(2, 2), (3, 2), (2, 3)]:
        tied = F.tied_penalty(d, V)
        assert tied["gap"] == 0 and tied["psd_gap"] == 0 and tied["symmetric"]
    # one matrix, one decay: the penalty is (λ/2) tr Z, not λ tr Z
    assert F.lam in F.tied_penalty(2, 2)["penalty"].free_symbols
    assert sp.simplify(F.tied_penalty(2, 2)["penalty"] - F.lam * F.tied_penalty(2, 2)["Z"].trace()) != 0


def test_scaled_decay_and_reweighting_remove_frequency():
    assert M.P not in M.scaled_decay_kappa().free_symbols
    assert sp.simplify(M.scaled_decay_kappa() - M.r**2 / M.lam0) == 0
    adam = M.scaled_decay_adamw_margin()
    assert not ({M.P, sp.Symbol("B", integer=True, positive=True)} & adam.free_symbols)
    assert sp.simplify(M.reweighted_kappa() - M.r**2 / M.lam0) == 0


def test_logit_adjustment_gives_the_balanced_bayes_predictor():
    """T6c: softmax(log q − log π) is the Lagrange minimiser of the token-balanced CE; π uniform → q."""
    d = M.balanced_bayes_predictor(3)
    adj = M.logit_adjusted([sp.log(x) for x in d["q"]], d["pi"], 1)
    assert all(sp.simplify(a - b) == 0 for a, b in zip(adj, d["p"]))
    h = sp.Symbol("h", positive=True)
    uniform = {pv: h for pv in d["pi"]}
    total = {d["q"][-1]: 1 - sum(d["q"][:-1])}
    assert all(sp.simplify(p.subs(uniform).subs(total) - q.subs(total)) == 0 for p, q in zip(d["p"], d["q"]))
    assert sp.simplify(M.logit_adjusted([sp.log(x) for x in d["q"]], d["pi"], 0)[0].subs(total) - d["q"][0]) == 0
