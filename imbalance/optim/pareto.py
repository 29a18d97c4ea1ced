"""Pareto tables of optimizers and mitigations: aggregate vs tail-bucket loss vs calibration, per seed.

A row is any object with ``name``, ``lam`` and the per-seed arrays of ``FIELDS`` (``LMOutcome`` of
``imbalance.optim.lm`` and ``imbalance.optim.real_text``). Every run of a seed starts from the same
initialisation and sees the same batches whatever the optimizer, so differences between rows are
taken seed by seed (paired), which removes most of the seed noise from their confidence intervals.

The target (regime a): a row whose tail-bucket loss is no worse than plain AdamW's at λ = 0 while its
aggregate loss is within ``tol`` nats of plain AdamW at the same λ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .. import metrics

__all__ = ["FIELDS", "LMOutcome", "pareto_axes", "pareto_table", "rows_from_json", "rows_to_json", "target_rows",
           "target_table", "write_tables", "stored_rows"]

FIELDS = ("train_aggregate", "heldout_aggregate", "train_tail", "heldout_tail", "train_ece", "heldout_ece")


@dataclass(frozen=True)
class LMOutcome:
    """Per seed (S,): aggregate Σ π_v ℓ_v, tail-bucket loss and ECE, on the train and held-out splits."""

    name: str
    lam: float
    train_aggregate: np.ndarray
    heldout_aggregate: np.ndarray
    train_tail: np.ndarray
    heldout_tail: np.ndarray
    train_ece: np.ndarray
    heldout_ece: np.ndarray


def _mean_half(v) -> tuple[float, float]:
    v = np.asarray(v, dtype=np.float64)
    if v.size < 2:
        return float(v.mean()), float("nan")
    mean, half = metrics.mean_ci(v[None], axis=1)
    return float(mean[0]), float(half[0])


def pareto_table(rows) -> str:
    """Markdown: seed mean ± 95 % Student-t half-width of every field."""
    lines = ["| optimizer | λ | " + " | ".join(f.replace("_", " ") for f in FIELDS) + " |",
             "|" + "---|" * (len(FIELDS) + 2)]
    for r in rows:
        cells = ["{:.3f} ± {:.3f}".format(*_mean_half(getattr(r, f))) for f in FIELDS]
        lines.append(f"| {r.name} | {r.lam:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _adamw(rows, lam):
    found = [r for r in rows if r.name == "AdamW" and np.isclose(r.lam, lam)]
    if not found:
        raise ValueError(f"rows need plain AdamW at lam={lam:g}; AdamW rows have lam="
                         f"{[r.lam for r in rows if r.name == 'AdamW']}")
    return found[0]


def target_rows(rows, tol: float = 0.01) -> list[dict]:
    """Per row with λ > 0 and split: the paired change of the aggregate loss from plain AdamW at the same λ,
    of the tail loss from plain AdamW at λ = 0 and at the same λ (seed means and 95 % half-widths; NaN
    half-width where the rows are the same run), and whether the
    target (tail change ≤ 0 and |aggregate change| ≤ ``tol``, on the seed means) is reached."""
    base = _adamw(rows, 0.0)
    out = []
    for r in rows:
        if r.lam <= 0:
            continue
        ref = _adamw(rows, r.lam)
        for split in ("train", "heldout"):
            d_agg = _mean_half(getattr(r, f"{split}_aggregate") - getattr(ref, f"{split}_aggregate"))
            d_tail = _mean_half(getattr(r, f"{split}_tail") - getattr(base, f"{split}_tail"))
            d_same = _mean_half(getattr(r, f"{split}_tail") - getattr(ref, f"{split}_tail"))
            out.append(dict(name=r.name, lam=r.lam, split=split, d_aggregate=d_agg[0], d_aggregate_ci=d_agg[1],
                            d_tail=d_tail[0], d_tail_ci=d_tail[1], d_tail_same=d_same[0], d_tail_same_ci=d_same[1],
                            reaches=bool(d_tail[0] <= 0 and abs(d_agg[0]) <= tol)))
    return out


def target_table(rows, tol: float = 0.01) -> str:
    """Markdown of ``target_rows``."""
    lines = [f"| optimizer | λ | split | aggregate − AdamW(same λ) | tail − AdamW(λ = 0) | tail − AdamW(same λ) | "
             f"target (tail ≤ λ = 0's, aggregate within {tol:g}) |", "|---|---|---|---|---|---|---|"]
    for t in target_rows(rows, tol):
        if t["name"] == "AdamW":
            same = agg = "—"
        else:
            agg = f"{t['d_aggregate']:+.3f} ± {t['d_aggregate_ci']:.3f}"
            same = f"{t['d_tail_same']:+.3f} ± {t['d_tail_same_ci']:.3f}"
        lines.append(f"| {t['name']} | {t['lam']:g} | {t['split']} | {agg} | {t['d_tail']:+.3f} ± "
                     f"{t['d_tail_ci']:.3f} | {same} | {'yes' if t['reaches'] else 'no'} |")
    return "\n".join(lines)


def rows_to_json(rows, path, **meta) -> None:
    """The rows (per-seed values) and ``meta`` (settings) as JSON."""
    data = {"meta": meta, "rows": [{"name": r.name, "lam": float(r.lam),
                                    **{f: np.asarray(getattr(r, f), dtype=np.float64).tolist() for f in FIELDS}}
                                   for r in rows]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)


def rows_from_json(path) -> tuple[list[LMOutcome], dict]:
    """(rows, meta) written by ``rows_to_json``; a file of another shape is a ValueError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        rows = [LMOutcome(name=str(d["name"]), lam=float(d["lam"]),
                          **{k: np.asarray(d[k], dtype=np.float64) for k in FIELDS}) for d in data["rows"]]
        return rows, dict(data["meta"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is not a Pareto-row file ({e})") from None


def pareto_axes(axs, rows, title=""):
    """On two Axes (train, held-out): tail-bucket loss against aggregate loss of every row, seed mean
    with 95 % intervals, plain AdamW's λ grid joined by a line. Returns ``axs``."""
    adamw = sorted((r for r in rows if r.name == "AdamW"), key=lambda r: r.lam)
    for ax, split in zip(axs, ("train", "heldout")):
        def point(r):
            a, ah = _mean_half(getattr(r, f"{split}_aggregate"))
            t, th = _mean_half(getattr(r, f"{split}_tail"))
            return a, t, ah, th
        pts = [point(r) for r in adamw]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color="0.5", lw=1)
        for r, p in zip(adamw, pts):
            ax.errorbar(p[0], p[1], xerr=p[2], yerr=p[3], fmt="s", color="0.3", ms=4)
            ax.annotate(f"λ={r.lam:g}", (p[0], p[1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for i, r in enumerate(r for r in rows if r.name != "AdamW"):
            a, t, ah, th = point(r)
            ax.errorbar(a, t, xerr=ah, yerr=th, fmt="o", color=f"C{i}", ms=5, label=f"{r.name} (λ={r.lam:g})")
        ax.set(xlabel=f"{split} aggregate loss (nats)", ylabel=f"{split} tail-bucket loss (nats)",
               title=f"{title} {split}".strip())
    axs[0].legend(fontsize=7)
    return axs


def write_tables(path, rows, marker: str, settings: str, tol: float = 0.01) -> None:
    """Replace the text between ``<!-- {marker}: start -->`` and ``<!-- {marker}: end -->`` in ``path``
    with the Pareto and target tables of ``rows``."""
    start, end = f"<!-- {marker}: start -->", f"<!-- {marker}: end -->"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no markers {start!r} … {end!r}")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    body = "\n\n".join([settings, pareto_table(rows), target_table(rows, tol)])
    with open(path, "w", encoding="utf-8") as f:
        f.write(before + start + "\n" + body + "\n" + end + after)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Write the Pareto tables of a rows file (--json of imbalance.optim.lm "
                                                 "or imbalance.optim.real_text) into a Markdown file")
    parser.add_argument("rows", help="JSON rows file")
    parser.add_argument("--write", required=True, help="Markdown file with the markers")
    parser.add_argument("--marker", required=True, help='e.g. "T6b regime a"')
    args = parser.parse_args(argv)
    rows, meta = rows_from_json(args.rows)
    command = f"python -m imbalance.optim.pareto {args.rows} --write {args.write} --marker \"{args.marker}\""
    write_tables(args.write, rows, args.marker,
                 f"{meta.get('settings', '')}. Generated by `{command}` from the run's rows.")


if __name__ == "__main__":
    main()


def stored_rows(regime: str):
    """(rows, meta) of the measured Pareto table of regime "a" (copy task) or "b" (real text) kept with
    the proofs (``proofs/data/T6b_regime_<regime>.json`` of a checkout; written by the ``--json`` of
    ``imbalance.optim.lm`` / ``imbalance.optim.real_text``)."""
    from pathlib import Path

    from .._validate import as_choice

    regime = as_choice(regime, "regime", {"a", "b"})
    path = Path(__file__).resolve().parents[2] / "proofs" / "data" / f"T6b_regime_{regime}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the stored rows come with a checkout of the repository")
    return rows_from_json(path)
