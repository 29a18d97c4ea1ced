"""Pareto rows: paired target differences against a direct computation, JSON round trip, tables; the T6b
report section (fast settings) passes its checks."""

import numpy as np
import pytest

from imbalance.optim.pareto import (
    FIELDS,
    LMOutcome,
    pareto_table,
    rows_from_json,
    rows_to_json,
    target_rows,
    target_table,
    write_tables,
)


def _row(name, lam, agg, tail):
    gen = np.random.default_rng(len(name) + int(10 * lam))
    vals = {f: gen.uniform(0, 1, 3) for f in FIELDS}
    vals.update(train_aggregate=np.array(agg, float), heldout_aggregate=np.array(agg, float) + 0.1,
                train_tail=np.array(tail, float), heldout_tail=np.array(tail, float) + 0.2)
    return LMOutcome(name, lam, **vals)


ROWS = [_row("AdamW", 0.0, [2.0, 2.1, 2.2], [5.0, 5.2, 5.1]), _row("AdamW", 0.3, [1.9, 2.0, 2.1], [5.5, 5.6, 5.7]),
        _row("fair", 0.3, [1.905, 2.004, 2.106], [4.9, 5.1, 5.0]), _row("costly", 0.3, [2.0, 2.1, 2.2], [4.0, 4, 4])]


def test_target_rows_paired_differences():
    got = {(t["name"], t["split"]): t for t in target_rows(ROWS)}
    fair = got[("fair", "train")]
    assert fair["d_aggregate"] == pytest.approx(np.mean([0.005, 0.004, 0.006]), abs=1e-12)
    assert fair["d_tail"] == pytest.approx(-0.1, abs=1e-12)
    d = np.array([0.005, 0.004, 0.006]) - 0.005
    assert fair["d_aggregate_ci"] == pytest.approx(4.302652729911275 * d.std(ddof=1) / np.sqrt(3), rel=1e-9)
    assert fair["reaches"] and got[("fair", "heldout")]["reaches"]
    assert not got[("costly", "train")]["reaches"]            # aggregate 0.1 above AdamW at the same λ
    assert not got[("AdamW", "train")]["reaches"]             # tail above λ = 0's
    assert ("AdamW", "train") in got and all(t["lam"] > 0 for t in got.values())
    assert "| fair | 0.3 | train |" in target_table(ROWS)
    with pytest.raises(ValueError, match="lam=0"):
        target_rows(ROWS[1:])


def test_json_round_trip_and_tables(tmp_path):
    rows_to_json(ROWS, tmp_path / "r.json", regime="a", settings="s")
    back, meta = rows_from_json(tmp_path / "r.json")
    assert meta == {"regime": "a", "settings": "s"} and pareto_table(back) == pareto_table(ROWS)
    (tmp_path / "bad.json").write_text('{"rows": [{"name": 1}]}')
    with pytest.raises(ValueError, match="not a Pareto-row file"):
        rows_from_json(tmp_path / "bad.json")
    md = tmp_path / "p.md"
    md.write_text("a\n<!-- X: start -->\nold\n<!-- X: end -->\nb\n")
    write_tables(md, ROWS, "X", "settings")
    text = md.read_text()
    assert "old" not in text and pareto_table(ROWS) in text and text.startswith("a\n") and text.endswith("b\n")


def test_fair_optimizer_section_fast():
    from imbalance.reproduce.fair_optim import fair_optimizer_section
    from imbalance.reproduce.report import Settings

    sec = fair_optimizer_section(Settings(fast=True))
    assert len(sec.checks) == 5 and all(c.passed for c in sec.checks), [(c.what, c.error) for c in sec.checks]
    verdicts = {r["variant"]: r["verdict"] for r in sec.rows}
    assert verdicts["row-scaled ρ"] == "fair" and verdicts["lazy decay"] == "over-corrects"
    assert set(sec.figures) == {"fair_optimizers_margins"}


def test_proof_tables_are_the_stored_rows():
    """The regime tables of proofs/T6b_fair_optimizers.md are what ``pareto_table``/``target_table`` make of the
    stored rows (rewrite them with ``python -m imbalance.optim.pareto``)."""
    from pathlib import Path

    from imbalance.optim.pareto import stored_rows

    text = (Path(__file__).parents[2] / "proofs" / "T6b_fair_optimizers.md").read_text(encoding="utf-8")
    for regime in ("a", "b"):
        rows, _ = stored_rows(regime)
        block = text.split(f"<!-- T6b regime {regime}: start -->")[1].split(f"<!-- T6b regime {regime}: end -->")[0]
        assert pareto_table(rows) in block and target_table(rows) in block
