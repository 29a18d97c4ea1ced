"""Named run settings (imbalance.reproduce.configs) and the simulation tolerance they carry."""

import dataclasses

import numpy as np
import pytest

from imbalance.reproduce import configs


def test_runs_are_frozen_and_named():
    runs = [getattr(configs, n) for n in configs.__all__ if isinstance(getattr(configs, n), configs.BigramRun)]
    assert len(runs) >= 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        configs.MARGINS_SGD.lr = 1.0
    for run in runs:
        kw = run.sweep_kwargs()
        assert kw["average_last"] == run.steps // 2 and kw["seeds"] == tuple(range(run.seeds))
        assert run.optimizer in ("sgd", "adamw") and 0 < run.bias < 0.05


def test_tolerance_is_bias_plus_z_standard_errors():
    rng = np.random.default_rng(0)
    theory = np.array([[1.0, 2.0, 4.0]])
    sim = theory[:, None, :] * (1 + 0.01 * rng.standard_normal((1, 8, 3)))   # (L, S, n)
    tol = configs.simulation_tolerance(theory, sim, bias=0.02, z=4.5)
    rel_se = sim.std(-2, ddof=1) / np.sqrt(8) / theory
    pooled = np.sqrt((rel_se ** 2).mean(-1, keepdims=True))
    np.testing.assert_allclose(tol, 0.02 + 4.5 * np.maximum(rel_se, pooled))
    assert (tol >= 0.02 + 4.5 * pooled).all()
    with pytest.raises(ValueError, match="seeds"):
        configs.simulation_tolerance(theory, sim[:, :1], 0.01)


def test_a_biased_simulation_fails_its_tolerance():
    # 8 seeds with 0.1 % noise around a value 5 % off: the tolerance (1 % bias + 4.5 se) refuses it
    rng = np.random.default_rng(1)
    theory = np.ones((1, 4))
    sim = 1.05 + 0.001 * rng.standard_normal((1, 8, 4))
    rel = np.abs(sim.mean(-2) - theory) / theory
    assert (rel > configs.simulation_tolerance(theory, sim, bias=0.01)).all()
