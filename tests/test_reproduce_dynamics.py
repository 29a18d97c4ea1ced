"""The T11 report section (fast settings) runs, its curves pass their 3 % check, and its split adds up."""

import numpy as np

from imbalance.reproduce.dynamics import lm_gap_section, token_dynamics_section
from imbalance.reproduce.report import Settings


def test_token_dynamics_section_fast():
    sec = token_dynamics_section(Settings(fast=True))
    assert {c.theorem for c in sec.checks} == {"T11"} and len(sec.checks) == 2
    assert all(c.passed for c in sec.checks), [(c.what, c.error) for c in sec.checks]
    for row in sec.rows:
        assert np.isclose(row["bayes"] + row["decay"] + row["transient"], row["predicted"], rtol=1e-12)
    assert set(sec.figures) == {"token_dynamics_sgd", "token_dynamics_adamw"}


def test_lm_gap_section_fast_adds_up():
    """The LM-stream split (fast, one seed): every bigram row is Bayes + decay + transient, the
    tail − head rows are the differences of the bucket rows, and at λ = 0 there is no decay part."""
    sec = lm_gap_section(Settings(fast=True, seeds=1))
    for row in sec.rows:
        total = row["bigram_bayes"] + row["bigram_decay"] + row["bigram_transient"]
        assert np.isclose(total, row["bigram_predicted"], rtol=1e-12, atol=1e-12)
        if row["lam"] == 0.0:
            assert row["bigram_decay"] == 0.0
    lam0 = [r for r in sec.rows if r["lam"] == 0.0]
    buckets = [r for r in lam0 if r["bucket"] != "tail-head"]
    gap = next(r for r in lam0 if r["bucket"] == "tail-head")
    for key in ("lm_train", "bigram_predicted", "factored_predicted"):
        assert np.isclose(gap[key], buckets[-1][key] - buckets[0][key])
        assert np.isfinite(gap[key])
