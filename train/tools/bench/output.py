"""Write a sweep's summary JSON and plots next to its CSV, or regenerate them from a CSV alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...io import atomic_write
from .plot import plot_rows
from .results import read_csv
from .summary import summarize

SUMMARY_NAME = "summary.json"


def write_outputs(
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    extra: dict[str, Any] | None = None,
    fit_min_len: int | None = None,
    stat: str = "median",
) -> dict[str, Any]:
    """Summarise rows, write out_dir/summary.json (with `extra`, e.g. the config) and the PNG plots; return the summary."""
    out_dir = Path(out_dir)
    summary = summarize(rows, fit_min_len, stat)
    if extra:
        summary = {**extra, **summary}
    out_dir.mkdir(parents=True, exist_ok=True)
    summary["plots"] = [p.name for p in plot_rows(rows, summary, out_dir)]
    atomic_write(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def replot(
    csv_path: str | Path, out_dir: str | Path | None = None, fit_min_len: int | None = None, stat: str | None = None
) -> dict[str, Any]:
    """Rebuild summary.json and the plots from a bench CSV (into out_dir, default the CSV's folder); fit_min_len and
    stat default to those of the summary.json already there."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ValueError(f"--replot: no such CSV file {str(csv_path)!r}")
    rows = read_csv(csv_path)
    if not rows:
        raise ValueError(f"--replot: {csv_path} has a header but no rows")
    out = Path(out_dir) if out_dir is not None else csv_path.parent
    old = out / SUMMARY_NAME
    extra = {}
    if old.is_file():  # keep what only the original run knew (its config and wall time)
        try:
            previous = json.loads(old.read_text())
            extra = {k: previous[k] for k in ("config", "wall_s", "command") if k in previous}
            if fit_min_len is None:
                fit_min_len = previous.get("fit_min_len")
            if stat is None:
                stat = previous.get("stat")
        except (json.JSONDecodeError, OSError):
            extra = {}
    return write_outputs(rows, out, extra, fit_min_len, stat or "median")
