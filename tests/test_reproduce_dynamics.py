"""The T11 report section (fast settings) runs, its curves pass their 3 % check, and its split adds up."""

import numpy as np

from imbalance.reproduce.dynamics import token_dynamics_section
from imbalance.reproduce.report import Settings


def test_token_dynamics_section_fast():
    sec = token_dynamics_section(Settings(fast=True))
    assert {c.theorem for c in sec.checks} == {"T11"} and len(sec.checks) == 2
    assert all(c.passed for c in sec.checks), [(c.what, c.error) for c in sec.checks]
    for row in sec.rows:
        assert np.isclose(row["bayes"] + row["decay"] + row["transient"], row["predicted"], rtol=1e-12)
    assert set(sec.figures) == {"token_dynamics_sgd", "token_dynamics_adamw"}
