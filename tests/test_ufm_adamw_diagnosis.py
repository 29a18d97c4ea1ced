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


def test_diagnosis_markdown_fast():
    """Tiny settings: both tables are there, one column per bucket, and the root polished from the runs
    is certified (its max|F| is printed below 1e-6)."""
    md = diagnosis_markdown(ufm_task(5), 2.0, batch_size=16, lr=1e-2, steps=80, restart_steps=8, lrs=(1e-2, 5e-3),
                            seeds=(0, 1))
    lines = md.splitlines()
    n_cols = lines[0].count("|") - 1
    assert all(line.count("|") - 1 == n_cols for line in lines if line.startswith("|"))
    polished = next(line for line in lines if line.startswith("| T10 polished"))
    assert float(polished.split("max abs F ")[1].split(")")[0]) < 1e-6
    assert sum(line.startswith("| 0.01 |") or line.startswith("| 0.005 |") for line in lines) == 2
