"""Append-only sweep storage: config.json (what was asked), checkpoint.pt (where it is),
results.jsonl (one line per evaluation). Reading never executes code
(``torch.load(weights_only=True)``, JSON); a corrupt or foreign file raises ValueError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

__all__ = ["SweepStore"]

_FORMAT = "imbalance.sim.sweep/2"  # /1: task digests without shapes and settings


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_text(path: Path) -> None:
    try:
        path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not a text file of sweep results (not UTF-8)") from None


class SweepStore:
    def __init__(self, out, config: dict):
        self.dir = Path(out)
        if self.dir.exists() and not self.dir.is_dir():
            raise ValueError(f"out must be a directory, got out={str(out)!r} (a file)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = {"format": _FORMAT, **config}
        cfg = self.dir / "config.json"
        if cfg.exists():
            try:
                old = json.loads(cfg.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise ValueError(f"out={str(out)!r}: config.json is not valid JSON ({str(e)[:120]})") from None
            if isinstance(old, dict) and str(old.get("format", "")).startswith("imbalance.sim.sweep/") \
                    and old.get("format") != _FORMAT:
                raise ValueError(f"out={str(out)!r} holds a sweep stored in format {old.get('format')!r}, not "
                                 f"{_FORMAT!r} (an earlier version of imbalance): use a new directory or delete it")
            if not isinstance(old, dict) or old.get("format") != _FORMAT:
                raise ValueError(f"out={str(out)!r}: config.json is not an imbalance sweep config")
            if old != json.loads(json.dumps(self.config)):
                diff = sorted(k for k in set(old) | set(self.config) if old.get(k) != self.config.get(k))
                raise ValueError(f"out={str(out)!r} holds a different sweep (differs in {diff}); "
                                 "use a new directory or the same arguments")
        else:
            _atomic_write_bytes(cfg, lambda f: f.write(json.dumps(self.config, indent=1).encode()))

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    def load(self) -> dict | None:
        path = self.checkpoint_path
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 — any unreadable file is reported the same way
            first = (str(e).splitlines() or [""])[0][:200]
            kind = type(e).__name__
            raise ValueError(f"{str(path)!r} is not a readable sweep checkpoint ({kind}: {first})") from None
        if not isinstance(state, dict) or state.get("fingerprint") != self.config.get("fingerprint"):
            raise ValueError(f"{str(path)!r} belongs to a different sweep (fingerprint mismatch)")
        return state

    def save(self, state: dict) -> None:
        _atomic_write_bytes(self.checkpoint_path, lambda f: torch.save(
            {"fingerprint": self.config["fingerprint"], **state}, f))

    def append_results(self, records: list[dict]) -> None:
        """Append evaluation records not yet in results.jsonl (a torn last line is dropped)."""
        path = self.dir / "results.jsonl"
        done, keep = set(), []
        if path.exists():
            _check_text(path)
            for line in path.read_text().splitlines():
                rec = _record(line)
                if rec is None:
                    continue  # a line torn by a kill mid-write, or not ours
                done.add(rec["step"])
                keep.append(line)
            if len(keep) != len(path.read_text().splitlines()):
                _atomic_write_bytes(path, lambda f: f.write("".join(k + "\n" for k in keep).encode()))
        new = [r for r in records if r["step"] not in done]
        if new:
            with open(path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in new))
                f.flush()
                os.fsync(f.fileno())

    def read_results(self) -> list[dict]:
        path = self.dir / "results.jsonl"
        if not path.exists():
            return []
        _check_text(path)
        return [rec for rec in map(_record, path.read_text().splitlines()) if rec is not None]


def _record(line: str) -> dict | None:
    """A results line as a dict with an integer "step", or None (torn, corrupt or foreign)."""
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
        return None
    return rec
