"""T6b: the sympy derivation (imbalance.symbolic.fair_decay) lambdified against the numeric solver
(imbalance.theory.fair_decay), which never sees these expressions."""

import doctest
import functools

import numpy as np
import pytest
import sympy as sp

import imbalance.symbolic.fair_decay as F
from imbalance.symbolic.adamw import B, P, eps, lam, m, r
from imbalance.theory.fair_decay import LAZY, fair_margin_law
from imbalance.zipf import zipf_pmf


def test_docstring_examples():
    result = doctest.testmod(F, extraglobs={"sp": sp})
    assert result.failed == 0 and result.attempted > 0


def _unpositive(expr):
    return expr.subs({F.a: F.presence(), F.D: 1 + (B - 1) * P})


@functools.cache
def _margin0(lazy):
    return sp.lambdify([P, B, r, lam, F.c], _unpositive(F.deterministic_margin(lazy)), "numpy")


@functools.cache
def _equation(K, lazy):
    return sp.lambdify([m, P, B, r, lam, F.c, eps], F.margin_equation(K, lazy), "numpy")


@pytest.mark.parametrize("lazy", LAZY)
@pytest.mark.parametrize("K,s,Bv,lamv,rv", [(8, 1.0, 4, 0.5, 1.0), (12, 1.5, 64, 2.0, 0.7), (5, 0.5, 1, 0.1, 2.0)])
def test_eps_zero_margin_matches_solver(lazy, K, s, Bv, lamv, rv):
    pi = zipf_pmf(K, s)
    c = np.linspace(0.3, 1.7, K)
    ours = fair_margin_law(pi, lamv, batch_size=Bv, r=rv, eps=0.0, decay_scale=c, lazy=lazy).margins
    np.testing.assert_allclose(_margin0(lazy)(pi, Bv, rv, lamv, c), ours, rtol=1e-12)


@pytest.mark.parametrize("lazy", LAZY)
@pytest.mark.parametrize("epsv", [1e-8, 1e-3, 0.1])
def test_margin_equation_vanishes_at_solver_margins(lazy, epsv):
    """ε > 0: the symbolic equation r(w_k(m) − w_j(m)) − m is zero at the solver's margins (K = 4)."""
    pi = np.array([0.55, 0.25, 0.15, 0.05])
    c = np.array([1.0, 0.8, 1.3, 0.6])
    ours = fair_margin_law(pi, 0.4, batch_size=6, r=1.2, eps=epsv, decay_scale=c, lazy=lazy).margins
    res = _equation(4, lazy)(ours, pi, 6, 1.2, 0.4, c, epsv)
    assert (np.abs(res) <= 1e-10 * np.maximum(ours, 1.0)).all(), res


def test_lazy_moments_index_tends_to_one_at_both_ends():
    assert F.lazy_moments_index_limits() == (1, 1)
