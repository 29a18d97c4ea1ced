"""A report section whose sweeps are killed mid-run resumes to the same numbers; a rerun of a
finished section trains nothing; other settings never reuse its sweeps."""

import math

import pytest

from imbalance.reproduce import Settings, lm_paradox_section
from imbalance.sim.scaleout import SweepRunner


class Steps:
    """Counts training steps across the sweeps of a section; raises KeyboardInterrupt at ``kill_at``."""

    def __init__(self, kill_at=None):
        self.n, self.kill_at = 0, kill_at

    def __call__(self, step):
        self.n += 1
        if self.n == self.kill_at:
            raise KeyboardInterrupt


def _same_rows(a, b):
    assert len(a) == len(b)
    for r, s in zip(a, b):
        assert r.keys() == s.keys()
        for k in r:
            assert r[k] == s[k] or (isinstance(r[k], float) and math.isnan(r[k]) and math.isnan(s[k])), k


def test_killed_section_resumes_to_the_uninterrupted_numbers(tmp_path):
    ref = lm_paradox_section(Settings(fast=True))  # in process, nothing stored
    steps = 150  # small_lm(fast=True): two sweeps (AdamW, reweighted) of 150 steps, checkpoints every 7
    killed = Steps(kill_at=steps + 60)
    with pytest.raises(KeyboardInterrupt):
        lm_paradox_section(Settings(fast=True, runner=SweepRunner("inline", tmp_path, callback=killed)))

    resumed = Steps()
    runner = SweepRunner("inline", tmp_path, callback=resumed)
    again = lm_paradox_section(Settings(fast=True, runner=runner))
    assert [s for _, s in runner.log] == ["read back", "resumed"]
    assert resumed.n == steps - 56  # the second sweep went on from its last checkpoint (step 56)
    _same_rows(again.rows, ref.rows)
    assert again.text == ref.text

    idle = Steps()
    runner = SweepRunner("inline", tmp_path, callback=idle)
    third = lm_paradox_section(Settings(fast=True, runner=runner))
    assert idle.n == 0 and [s for _, s in runner.log] == ["read back", "read back"]
    _same_rows(third.rows, ref.rows)

    # other settings (here --seeds 1) get their own directories, next to the old ones
    other = SweepRunner("inline", tmp_path)
    lm_paradox_section(Settings(fast=True, seeds=1, runner=other))
    assert [s for _, s in other.log] == ["trained", "trained"]
    names = [n for n, _ in runner.log + other.log]
    assert len(set(names)) == 4 and all(n.startswith("lm_paradox-") for n in names)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(names)
