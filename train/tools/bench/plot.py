"""Log-log plots of time and memory against sequence length: one panel per mode, one line per mixer."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from .summary import cost, cpu_cost, memory  # noqa: E402

TIME_LABELS = {"train": "s per step per sequence", "prefill": "s per prompt", "decode": "s per decode step (one token each)"}
MEMORY_LABELS = {"train": "peak bytes per sequence", "prefill": "peak bytes per prompt", "decode": "decode-state bytes"}


def _iqr(row: dict[str, Any]) -> tuple[float, float] | None:
    """The interquartile range of a point's wall time, per sequence as `cost` scales it."""
    if row.get("time_q25_s") is None:
        return None
    per = 1.0 if row["mode"] == "decode" else 1.0 / row["batch"]
    return row["time_q25_s"] * per, row["time_q75_s"] * per


def _panel(ax, rows: list[dict[str, Any]], mode: str, value, ylabel: str, fits: dict[str, Any], key: str) -> None:
    held_label = "held by the state tensors"
    for mixer in dict.fromkeys(r["mixer"] for r in rows):
        mine = sorted((r for r in rows if r["mixer"] == mixer and r["mode"] == mode), key=lambda r: r["seq_len"])
        ok = [r for r in mine if r["status"] == "ok" and value(r)]
        if not ok:
            continue
        fit = fits.get(mode, {}).get(mixer, {}).get(key)
        label = f"{mixer} (slope {fit['exponent']:.2f})" if fit else mixer
        (line,) = ax.plot([r["seq_len"] for r in ok], [value(r) for r in ok], marker="o", label=label)
        if key == "time":
            bands = [(r["seq_len"], _iqr(r)) for r in ok]
            bands = [(n, b) for n, b in bands if b]
            if bands:
                ax.fill_between([n for n, _ in bands], [b[0] for _, b in bands], [b[1] for _, b in bands],
                                color=line.get_color(), alpha=0.2, linewidth=0)
        if key == "memory" and mode == "decode":  # what the state tensors hold, over the analytic line
            held = [(r["seq_len"], r["state_bytes_measured"]) for r in ok if r.get("state_bytes_measured")]
            ax.plot([n for n, _ in held], [b for _, b in held], linestyle="none", marker="x", color="black",
                    markersize=5, label=held_label)
            held_label = None  # one legend entry for all mixers
        for r in mine:  # mark where the line stops, and why
            if r["status"] in ("oom", "timeout"):
                ax.annotate(r["status"], (r["seq_len"], value(ok[-1])), fontsize=7, ha="center", va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(mode)
    ax.set_xlabel("sequence length L")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)


def plot_rows(rows: list[dict[str, Any]], summary: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write time.png, cpu_time.png (when CPU times were recorded) and memory.png into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    env = summary["environment"]
    title = f"{env['device_name']} ({env['device']}), torch {env['torch_version']}, {env['threads']} threads"
    paths = []
    stat = summary.get("stat", "median")
    wall, cpu = partial(cost, stat=stat), partial(cpu_cost, stat=stat)
    time_labels = {mode: f"{label} ({stat})" for mode, label in TIME_LABELS.items()}
    figures = [("time", wall, time_labels, "time"), ("memory", memory, MEMORY_LABELS, "memory")]
    if any(r.get("cpu_time_median_s") for r in rows):
        cpu_labels = {mode: f"worker CPU {label}" for mode, label in time_labels.items()}
        figures.insert(1, ("cpu_time", cpu, cpu_labels, "cpu_time"))
    for name, value, labels, key in figures:
        fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
        for ax, mode in zip(axes[0], modes, strict=True):
            ylabel = labels[mode]
            kinds = {r["mem_kind"] for r in rows if r["mode"] == mode and r["status"] == "ok" and r.get("mem_kind")}
            if name == "memory" and mode != "decode" and kinds:
                ylabel += f"\n({', '.join(sorted(kinds))})"
            _panel(ax, rows, mode, value, ylabel, summary["fits"], key)
        note = "; shaded: interquartile range of wall time" if key == "time" else ""
        fig.suptitle(f"seqmix bench: {name.replace('_', ' ')} vs L — {title}{note}", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
