"""A reproduction's outputs: its steps' result rows in one CSV, and our numbers set beside the paper's."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from ...io import atomic_write
from ..sweep.runner import flatten_metrics, read_final_metrics
from .spec import Claim, Plot, Reproduction

NOT_MEASURED = "not measured"


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file, or the one row of a final_metrics.json (its metrics flattened), or of another JSON file."""
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return [{k: v for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
    if path.name == "final_metrics.json":
        return [{k: str(v) for k, v in read_final_metrics(path).items()}]
    return [{k: str(v) for k, v in flatten_metrics(json.loads(path.read_text())).items()}]


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows to a CSV (atomically), columns in first-seen order."""
    header: list[str] = []
    for row in rows:
        header += [k for k in row if k not in header]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def collect(repro: Reproduction, out: Path) -> list[dict[str, str]]:
    """Every results file of the reproduction, as rows with a leading `step` column (the newest file when a glob
    matches several, e.g. a resumed fit's version folders)."""
    rows: list[dict[str, str]] = []
    for entry in repro.results:
        found = sorted((out / "steps" / entry.step).glob(entry.file), key=lambda p: p.stat().st_mtime_ns)
        if not found:
            raise FileNotFoundError(f"step {entry.step} wrote no {entry.file} (under {out / 'steps' / entry.step})")
        rows += [{"step": entry.step, **row} for row in read_rows(found[-1])]
    return rows


def measure(claim: Claim, out: Path) -> float | None:
    """Our number for a claim: its column over the matching rows of its file, reduced; None when none matches."""
    path = out / claim.file
    if not path.is_file():
        return None
    values = []
    for row in read_rows(path):
        if all(row.get(k) == v for k, v in claim.where.items()) and row.get(claim.column) not in (None, ""):
            value = float(row[claim.column])
            if math.isfinite(value):
                values.append(value)
    if not values:
        return None
    return {"max": max, "min": min, "mean": lambda v: sum(v) / len(v)}[claim.reduce](values)


def compare(repro: Reproduction, out: Path) -> list[dict[str, Any]]:
    """One row per claim: what, source, the paper's number, ours, the rule and whether they agree."""
    rows = []
    for claim in repro.claims:
        ours = measure(claim, out)
        rows.append({
            "what": claim.what, "source": claim.source, "paper": claim.paper,
            "ours": NOT_MEASURED if ours is None else round(ours, 4), "rule": claim.rule(),
            "agrees": "" if ours is None else ("yes" if claim.agrees(ours) else "no"),
        })
    return rows


def load_average() -> str:
    """The 1 / 5 / 15-minute load averages, as `uptime` prints them."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def report(repro: Reproduction, out: Path, state: dict[str, Any]) -> str:
    """OUT/comparison.md: the claim, the table of our numbers beside the paper's, the commands and their wall times."""
    import torch

    rows = compare(repro, out)
    write_rows(rows, out / "comparison.csv")
    steps = state.get("steps", {})
    wall = sum(float(s.get("wall_time_s", 0)) for s in steps.values())
    lines = [f"# {repro.name} (preset {repro.preset})", "", f"Claim: {repro.claim}", "", f"Source: {repro.source}", ""]
    if repro.preset != "full":
        lines += [f"Preset `{repro.preset}` is a smoke run of the machinery: its numbers say nothing about the claim.", ""]
    lines += ["| claim | source | paper | ours | agree? | rule |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['source']} | {r['paper']} | {r['ours']} | {r['agrees'] or '-'} | {r['rule']} |")
    lines += ["", f"Steps (wall time {wall:.0f} s in all; load average {load_average()} at the end; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}):", ""]
    for step_id, s in steps.items():
        lines.append(f"- `{step_id}` ({s.get('status')}, {float(s.get('wall_time_s', 0)):.1f} s): `{s.get('shown', '')}`")
    text = "\n".join(lines) + "\n"
    atomic_write(out / "comparison.md", text)
    return text


def best_points(rows: list[dict[str, str]], plot: Plot) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """panel -> line -> sorted (x, best y): rows matching `where`, y maximised over everything else (e.g. the lr)."""
    best: dict[tuple[str, str, float], float] = {}
    for row in rows:
        if not all(row.get(k) == v for k, v in plot.where.items()):
            continue
        try:
            x, y = float(row[plot.x]), float(row[plot.y])
        except (KeyError, ValueError):
            continue  # a failed run, or a row of another step
        if not math.isfinite(y):
            continue
        key = (row.get(plot.panel, "") if plot.panel else "", row.get(plot.line, ""), x)
        best[key] = max(y, best.get(key, -math.inf))
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for (panel, line, x), y in sorted(best.items()):
        out.setdefault(panel, {}).setdefault(line, []).append((x, y))
    return out


def draw(plot: Plot, out: Path) -> Path | None:
    """Draw one of the reproduction's figures into the run folder; None when no row has both x and y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = best_points(read_rows(out / plot.table), plot)
    if not points:
        return None
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 3.6), squeeze=False, sharey=True)
    for ax, (panel, lines) in zip(axes[0], points.items(), strict=True):
        for line, xy in lines.items():
            ax.plot(*zip(*xy, strict=True), marker="o", label=line)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(plot.x)
        ax.set_title(f"{plot.panel} = {panel}" if plot.panel else "", fontsize=9)
        ax.grid(alpha=0.3)
    best = f" (best over {plot.best_over})" if plot.best_over else ""
    axes[0][0].set_ylabel(plot.y + best)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path = out / plot.file
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
