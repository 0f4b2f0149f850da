"""The sweep's results table: one CSV row per run, rewritten atomically so a crash never truncates it."""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from pathlib import Path
from typing import Any

from ...io import atomic_write

HEAD = ("run_id", "status")
TAIL = ("wall_time_s", "exit_code", "attempts", "finished_at", "config_path", "log_path", "error")
OK, FAILED = "ok", "failed"


def cell(value: Any) -> str:
    """How a value is written in the table: JSON for lists/mappings, repr-exact numbers, '' for None."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


class ResultsTable:
    """Rows keyed by run id, kept in memory and written through to `path` on every change.

    Columns: run_id, status, parameters (in sweep order), metrics, then wall_time_s, exit_code, attempts,
    finished_at, config_path, log_path, error. A rerun replaces its run's row in place; no other row is dropped.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: dict[str, dict[str, str]] = {}
        self.columns: list[str] = []  # parameter and metric columns, in table order
        self._lock = threading.Lock()
        if self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = [c for c in reader.fieldnames or [] if c not in HEAD + TAIL]
                for row in reader:
                    if row.get("run_id"):
                        self.rows[row["run_id"]] = {k: v or "" for k, v in row.items() if k is not None}

    def status(self, run_id: str) -> str | None:
        """The recorded status of a run, or None when it has no row."""
        row = self.rows.get(run_id)
        return row["status"] if row else None

    def header(self) -> list[str]:
        """Current column order."""
        return [*HEAD, *self.columns, *TAIL]

    def record(self, run_id: str, status: str, params: dict[str, Any], metrics: dict[str, Any],
               **meta: Any) -> dict[str, str]:
        """Insert or replace a run's row and write the table through; returns the row as written."""
        unknown = set(meta) - set(TAIL)
        if unknown:
            raise ValueError(f"unknown result fields {sorted(unknown)}; valid: {', '.join(TAIL)}")
        with self._lock:
            row = {"run_id": run_id, "status": status}
            # A new parameter column goes after the last parameter column already present; new metrics go last.
            at = max((self.columns.index(k) + 1 for k in params if k in self.columns), default=0)
            for k, v in params.items():
                if k not in self.columns:
                    self.columns.insert(at, k)
                at = self.columns.index(k) + 1
                row[k] = cell(v)
            for k, v in sorted(metrics.items()):
                col = f"metric:{k}" if k in params or k in HEAD + TAIL else k
                if col not in self.columns:
                    self.columns.append(col)
                row[col] = cell(v)
            row.update({k: cell(v) for k, v in meta.items()})
            self.rows[run_id] = row
            self._write()
            return row

    def _write(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.header(), restval="", lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows.values())
        atomic_write(self.path, buf.getvalue())


def best_row(rows: list[dict[str, str]], metric: str, goal: str = "minimize") -> dict[str, str] | None:
    """The finished row with the best value of `metric` (None if no row has it)."""
    scored = []
    for r in rows:
        try:
            v = float(r.get(metric) or "nan")
        except ValueError:
            continue
        if r.get("status") == OK and not math.isnan(v):
            scored.append((v, r))
    if not scored:
        return None
    return (min if goal == "minimize" else max)(scored, key=lambda t: t[0])[1]
