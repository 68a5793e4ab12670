"""The report layer every evaluation shares: summaries of rows (mean / median / rate, always
with the n they rest on), per-group splits, markdown tables, and report.json + report.md.

A flow builds its rows, summarises them with these, and hands the lot to `finish_report`, so
every report is rounded, written and laid out the same way."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from stoic_cli.evaluation.judges import SAME_PERSON


# --------------------------------------------------------------------------- summaries

def stat(values: Iterable) -> dict:
    """Mean, median and n of the finite values (None, NaN and inf skipped); mean and median are
    None when nothing is left."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    return {"mean": float(np.mean(v)) if v else None, "median": float(np.median(v)) if v else None, "n": len(v)}


def rate(values: Iterable, test: Callable[[object], bool] = bool) -> dict:
    """Share of the known values (None and NaN skipped) that pass `test`, with how many were
    known; the rate is None when none was."""
    known = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return {"rate": sum(bool(test(v)) for v in known) / len(known) if known else None, "n": len(known)}


def same_person_rate(distances: Iterable[float | None], threshold: float = SAME_PERSON) -> dict:
    """Share of dlib distances below the same-person threshold."""
    return rate(distances, lambda d: d < threshold)


def by_group(rows: Iterable[dict], key: str | Callable[[dict], object],
             summarise: Callable[[list[dict]], object]) -> dict[str, object]:
    """rows split by `key` (a row's field, or a function of the row; missing = "unknown"),
    each group summarised; groups in sorted order."""
    get = key if callable(key) else (lambda row: row.get(key))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        value = get(row)
        groups.setdefault("unknown" if value is None or value == "" else str(value), []).append(row)
    return {name: summarise(groups[name]) for name in sorted(groups)}


# --------------------------------------------------------------------------- writing

def clean(obj):
    """JSON-safe: numpy scalars to Python, NaN/inf to null, floats rounded (a report states what
    was measured, not the last bits of float noise)."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return round(float(obj), 5) if math.isfinite(obj) else None
    return obj


def fmt(x, pct: bool = False, missing: str = "-") -> str:
    """A number for a table: three decimals, or a percentage with one; `missing` for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return missing
    return f"{100 * x:.1f} %" if pct else f"{x:.3f}"


def table_row(cells: Iterable) -> str:
    """One markdown table row; an empty cell stays a single space wide."""
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


_ALIGN = {"l": "---", "r": "---:", "c": ":-:"}


def table(header: Sequence, rows: Iterable[Sequence], align: str | None = None) -> list[str]:
    """A markdown table's lines. `align` has one letter per column, l(eft), r(ight) or c(entre);
    by default the first column is left-aligned and the others right-aligned (labels, then numbers)."""
    align = align or "l" + "r" * (len(header) - 1)
    return [table_row(header), "|" + "|".join(_ALIGN[a] for a in align) + "|"] + [table_row(r) for r in rows]


def write_report(out_dir: str | Path, report: dict, markdown_text: str, json_default=None) -> None:
    """report.json and report.md into out_dir (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=json_default))
    (out_dir / "report.md").write_text(markdown_text)


def finish_report(summary: dict, *, settings: dict, counts: dict, failures: list, rows: list,
                  out_dir: str | Path | None, markdown: Callable[[dict], str],
                  sheet: Callable[[dict], object] | None = None) -> dict:
    """The report a flow returns: its summary, then settings, counts, failures and rows, made
    JSON-safe. With out_dir, report.json and report.md are written there and `sheet` (given the
    finished report) draws the pictures."""
    report = clean({**summary, "settings": settings, "counts": counts, "failures": failures, "rows": rows})
    if out_dir is not None:
        write_report(out_dir, report, markdown(report))
        if sheet is not None:
            sheet(report)
    return report
