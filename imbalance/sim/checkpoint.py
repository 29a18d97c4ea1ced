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

_FORMAT = "imbalance.sim.sweep/1"


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"out={str(out)!r}: config.json is not valid JSON ({e})") from None
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
            raise ValueError(f"{str(path)!r} is not a readable sweep checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict) or state.get("fingerprint") != self.config["fingerprint"]:
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
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill mid-write
                done.add(rec.get("step"))
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
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out
