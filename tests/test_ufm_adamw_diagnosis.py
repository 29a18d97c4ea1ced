"""The UFM AdamW diagnosis: a restart at the T10 equilibrium really starts there, and the tables build."""

import numpy as np

from imbalance.reproduce.ufm_adamw_diagnosis import diagnosis_markdown, from_prediction, ufm_task


def test_restart_starts_at_the_prediction():
    """With lr = 1e-12 over 4 steps the parameters cannot move (each AdamW step moves a coordinate by
    at most ~lr), so the simulator's bucket losses (torch, its own evaluation) must equal the T10
    prediction's (numpy, the theory's loss) to float64 round-off: the restart uses the predicted point."""
    task = ufm_task(5)
    pred, sims = from_prediction(task, 2.0, batch_size=16, lrs=(1e-12,), steps=4, width=2, seeds=(0, 1))
    np.testing.assert_allclose(sims[1e-12], pred, rtol=1e-9)


def test_each_restart_starts_at_the_prediction():
    """Training updates its parameters in place: a restart at lr 1e-12 that follows one at lr 1e-2
    must still start at the prediction (bucket losses equal to round-off), not where the first ended."""
    task = ufm_task(5)
    pred, sims = from_prediction(task, 2.0, batch_size=16, lrs=(1e-2, 1e-12), steps=20, width=2, seeds=(0, 1))
    assert np.abs(sims[1e-2] / pred - 1).max() > 1e-6  # the first restart moved
    np.testing.assert_allclose(sims[1e-12], pred, rtol=1e-9)


def test_diagnosis_markdown_fast():
    """Tiny settings: both tables are there, one column per bucket, and the root polished from the runs
    is certified (its max|F| is printed below 1e-6)."""
    md = diagnosis_markdown(ufm_task(5), 2.0, batch_size=16, lr=1e-2, steps=80, restart_steps=8, lrs=(1e-2, 5e-3),
                            seeds=(0, 1), slow=(5e-3, 40))
    lines = md.splitlines()
    n_cols = lines[0].count("|") - 1
    assert all(line.count("|") - 1 == n_cols for line in lines if line.startswith("|"))
    polished = next(line for line in lines if line.startswith("| T10 polished"))
    assert float(polished.split("max abs F ")[1].split(")")[0]) < 1e-6
    assert sum(line.startswith("| lr 0.005") for line in lines) == 2
    assert sum(line.startswith("| 0.01 |") or line.startswith("| 0.005 |") for line in lines) == 2



def test_flow_stability_agrees_with_the_flow():
    """μ, the smallest eigenvalue real part of the finite-difference Jacobian, against the mean-field flow
    θ̇ = −F(θ) integrated independently (explicit Euler, step 0.01) from a 1e-4 perturbation of the
    equilibrium: μ > 0 must come with the perturbation dying (below 1e-3 of its size by flow time 5), and
    its late decay rate (flow times 2.5 → 5) cannot exceed μ beyond Euler's own rate bias hμ/2 ≈ 1 %
    (5 % allowed). The rate may fall below μ: the spectrum is a near-degenerate cluster at λ, whose
    near-defective modes decay like t·e^{−λt}, so no lower bound is asserted."""
    from imbalance.reproduce.adamw_shared import seed_init
    from imbalance.reproduce.ufm_adamw_diagnosis import flow_stability
    from imbalance.sim import FactoredBigram
    from imbalance.theory.adamw_shared import bigram_law, factored_bigram_adamw_equilibrium, stationarity

    task = ufm_task(5)
    eq = factored_bigram_adamw_equilibrium(task.counts, 2.0, init=seed_init(FactoredBigram(width=2), task, 0),
                                           batch_size=16, r=task.r)
    W, E = eq.W, eq.E.T  # (V, d), (C, d)
    mu = flow_stability(task, 2.0, W, E, batch_size=16)
    law, rng = bigram_law(task.counts), np.random.default_rng(0)
    w, e = W + 1e-4 * rng.standard_normal(W.shape), E + 1e-4 * rng.standard_normal(E.shape)
    dist = []
    for _ in range(500):
        fW, fE = stationarity(w, e, law, 2.0, batch_size=16, r=task.r)
        w, e = w - 0.01 * fW, e - 0.01 * fE
        dist.append(np.sqrt(((w - W) ** 2).sum() + ((e - E) ** 2).sum()))
    rate = np.log(dist[249] / dist[499]) / 2.5
    assert mu > 0 and dist[499] < 1e-3 * dist[0] and rate < 1.05 * mu, (mu, rate, dist[0], dist[499])
