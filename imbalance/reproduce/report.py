"""Report machinery: sections, checks, settings, and the writer of report.md."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Check", "Section", "Settings", "timed", "write_report"]


@dataclass(frozen=True)
class Check:
    """One theory-vs-independent-computation comparison: passes when error <= tolerance."""

    theorem: str
    what: str
    error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.error) and self.error <= self.tolerance)


@dataclass
class Section:
    key: str
    title: str
    text: str
    rows: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)   # name -> matplotlib Figure
    checks: list[Check] = field(default_factory=list)
    seconds: float | None = None  # wall-clock time it took to make (set by ``timed``)


@dataclass(frozen=True)
class Settings:
    """What the report runs. ``runner``: an ``imbalance.sim.scaleout.SweepRunner`` — where the
    sweeps run (in process, local subprocesses, slurm) and are kept for resuming; None runs
    them here without storing them."""

    fast: bool = False
    seeds: int = 3
    device: str = "auto"
    text: Path | None = None
    runner: object = None

    def submit(self, name: str, task, lams, **sweep_kw):
        """Start ``sweep(task, lams, device=self.device, **sweep_kw)`` through ``runner``, kept
        under a directory named after ``name`` and the configuration; ``.result()`` waits."""
        from ..sim.scaleout import SweepRunner

        runner = self.runner if self.runner is not None else SweepRunner()
        return runner.submit(name, task, lams, device=self.device, **sweep_kw)

    @property
    def lams(self) -> np.ndarray:
        return np.array([1e-3, 1e-2, 1e-1, 1.0]) if self.fast else np.array([1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0])


def timed(make, st: Settings) -> Section:
    """``make(st)`` with the wall-clock seconds it took in the section's ``seconds``."""
    t0 = time.perf_counter()
    section = make(st)
    section.seconds = time.perf_counter() - t0
    return section


def _md_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_report(sections: list[Section], out: Path) -> Path:
    """report.md, figures as PNG and SVG, and results.jsonl (one tidy row per line)."""
    out.mkdir(parents=True, exist_ok=True)
    md = ["# imbalance — reproduction report", ""]
    checks = [c for s in sections for c in s.checks]
    if checks:
        md += ["## Checks", "", _md_table([dict(theorem=c.theorem, check=c.what, error=c.error, tolerance=c.tolerance,
                                                 passed=c.passed) for c in checks]), ""]
    with open(out / "results.jsonl", "w") as fh:
        for s in sections:
            md += [f"## {s.title}", "", s.text, ""]
            for name, fig in s.figures.items():
                fig.savefig(out / f"{name}.png")
                fig.savefig(out / f"{name}.svg")
                md += [f"![{name}]({name}.png)", ""]
            md += [_md_table(s.rows), ""]
            for r in s.rows:
                fh.write(json.dumps({"section": s.key, **r}) + "\n")
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    return out / "report.md"
