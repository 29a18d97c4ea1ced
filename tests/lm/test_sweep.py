"""The sweep collects its runs in (λ, seed) order, reads them back, and writes the report."""

import json

import numpy as np

from imbalance.lm.report import below_one_per_batch, write_sweep_report
from imbalance.lm.sweep import lm_sweep, run_dir
from imbalance.lm.train import TrainConfig, train_run

CFG = TrainConfig(layers=2, width=64, heads=4, context=32, steps=6, batch_size=4, eval_every=3, eval_tokens=512,
                  final_eval_tokens=2048, warmup=2)


def test_sweep_report_and_read_back(token_file, split, tmp_path):
    res = lm_sweep(token_file, [0.0, 1.0], [0, 1], CFG, out=tmp_path, heldout_fraction=0.2, device="cpu",
                   progress=False)
    assert res.heldout_sums.shape == (2, 2, 512)
    one = train_run(split, 1.0, 1, CFG, out=run_dir(tmp_path, 1.0, 1), device="cpu", progress=False)
    np.testing.assert_array_equal(res.heldout_sums[1, 1], one.heldout_sums)  # the stored run, read back
    s = res.summary("heldout")
    direct = res.heldout_sums[0, 0].sum() / res.heldout_counts[0, 0].sum()
    assert s["aggregate_seeds"][0, 0] == direct
    assert np.isfinite(s["aggregate_ci"]).all()
    paired = s["token_balanced_seeds"][1] - s["token_balanced_seeds"][0]  # λ = 1 minus λ = 0, seed by seed
    assert s["token_balanced_delta"][1] == paired.mean() and s["token_balanced_delta"][0] == 0
    report = write_sweep_report(res, tmp_path / "report")
    text = report.read_text()
    assert "| 0 |" in text and "token-balanced" in text and "What was decayed" in text
    rows = [json.loads(line) for line in (tmp_path / "report" / "results.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "heldout"} and len({r["seed"] for r in rows}) == 2
    assert (tmp_path / "report" / "paradox.png").stat().st_size > 0
    pi = split.token_probs
    assert below_one_per_batch(pi, CFG.tokens_per_step) == np.mean(pi[pi > 0] < 1 / CFG.tokens_per_step)


def test_sweep_through_submitit_matches_inline(token_file, tmp_path):
    """Two λ jobs through submitit's debug executor (the Slurm code path, run in process) give the
    numbers of the inline sweep."""
    kw = {"heldout_fraction": 0.2, "device": "cpu", "progress": False}
    inline = lm_sweep(token_file, [0.0, 0.5], [0], CFG, out=tmp_path / "inline", **kw)
    jobs = lm_sweep(token_file, [0.0, 0.5], [0], CFG, out=tmp_path / "jobs", executor="slurm", cluster="debug",
                    lam_jobs=2, **kw)
    np.testing.assert_array_equal(jobs.heldout_sums, inline.heldout_sums)
    np.testing.assert_array_equal(jobs.train_sums, inline.train_sums)
