"""Speed of the exact factored-model solvers. Run on demand:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m pytest -m benchmark tests/benchmarks/bench_factored.py -s

Targets (2-core machine, one thread): UFM K = 1000 Zipf classes ≤ 60 s, factored bigram
V = 2000 from a ≥ 1e6-token Zipfian stream ≤ 120 s, both certified to a relative duality
gap of 1e-6; ≥ 20× faster than cvxpy at 50 classes at the same accuracy (cvxpy is an
optional extra of the benchmark only: `pip install cvxpy`).
"""

import time

import numpy as np
import pytest

from imbalance.corpus import bigram_counts, zipf_successor_stream
from imbalance.theory.factored_bigram import factored_bigram_equilibrium
from imbalance.theory.ufm import ufm_equilibrium
from imbalance.zipf import zipf_pmf

pytestmark = pytest.mark.benchmark


def test_ufm_k1000():
    pi = zipf_pmf(1000, 1.0)
    t0 = time.perf_counter()
    eq = ufm_equilibrium(pi, 1e-3, 1e-3, rtol=1e-6)
    dt = time.perf_counter() - t0
    print(f"\nUFM K=1000 Zipf(1), λ_W=λ_H=1e-3: {dt:.1f} s, rel gap {eq.rel_gap:.2e}, "
          f"objective {eq.objective:.10f}")
    assert eq.rel_gap <= 1e-6
    assert dt <= 60


def test_factored_bigram_v2000():
    V = 2000
    tok = zipf_successor_stream(V, 1_000_000, seed=0)
    C = bigram_counts(tok, V)
    t0 = time.perf_counter()
    eq = factored_bigram_equilibrium(C, 1e-3, 1e-3, rtol=1e-6)
    dt = time.perf_counter() - t0
    print(f"\nfactored bigram V=2000 (1e6 tokens, nnz {C.nnz}), λ=1e-3: {dt:.1f} s, rel gap "
          f"{eq.rel_gap:.2e}, rank {eq.rank}, objective {eq.objective:.10f}")
    assert eq.rel_gap <= 1e-6
    assert dt <= 120


def test_against_cvxpy_k50():
    cp = pytest.importorskip("cvxpy")  # optional extra `bench`
    K = 50
    pi = zipf_pmf(K, 1.0)
    mu = 1e-3
    Z = cp.Variable((K, K))
    loss = sum(pi[k] * (cp.log_sum_exp(Z[k, :]) - Z[k, k]) for k in range(K))
    prob = cp.Problem(cp.Minimize(loss + mu * cp.normNuc(np.diag(np.sqrt(pi)) @ Z)))
    t0 = time.perf_counter()
    prob.solve(solver=cp.CLARABEL)
    t_cvx = time.perf_counter() - t0
    exact = ufm_equilibrium(pi, mu, mu, rtol=1e-12)
    err_cvx = abs(prob.value - exact.objective) / exact.objective
    rtol = max(err_cvx, 1e-12)
    t0 = time.perf_counter()
    ours = ufm_equilibrium(pi, mu, mu, rtol=rtol)
    t_ours = time.perf_counter() - t0
    print(f"\nK=50: cvxpy/Clarabel {t_cvx:.2f} s (rel error {err_cvx:.1e} vs certified optimum), "
          f"ours {t_ours:.3f} s to a certified rel gap {ours.rel_gap:.1e}: {t_cvx / t_ours:.0f}×")
    assert ours.rel_gap <= rtol
    assert t_cvx / t_ours >= 20
