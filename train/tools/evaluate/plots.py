"""The figures of `seqmix evaluate`: the length x depth heatmap, the extrapolation curve, recall against state bytes,
and in-context regression's loss against the number of context points."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def plot_heatmap(
    rows: list[dict[str, Any]], path: Path, title: str, train_len: int, depth_label: str = "depth (fraction of context)"
) -> None:
    """Accuracy over context length (x) and depth (y, 0 = start of the context at the top), values written in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in rows})
    depths = sorted({r["depth"] for r in rows})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for r in rows:
        grid[depths.index(r["depth"]), lengths.index(r["length"])] = r["accuracy"]
    fig, ax = plt.subplots(figsize=(1.1 * len(lengths) + 2.5, 0.6 * len(depths) + 1.8))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                color="white" if value < 0.2 or value > 0.85 else "black")  # readable on the dark ends of the map
    ax.set_xticks(range(len(lengths)), [f"{n}*" if n == train_len else str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
    ax.set_xlabel(f"context length (tokens; * = training length {train_len})")
    ax.set_ylabel(depth_label)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curve(
    curves: dict[str, list[dict[str, Any]]], path: Path, title: str, train_lens: list[int], chance: float | None
) -> None:
    """Accuracy against context length (log2 axis), one line per model, the training length and chance marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for label, rows in curves.items():
        ax.plot([r["length"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=label)
    ax.set_xscale("log", base=2)
    lengths = sorted({r["length"] for rows in curves.values() for r in rows})
    ax.set_xticks(lengths, [str(n) for n in lengths])
    for train_len in train_lens:
        ax.axvline(train_len, color="grey", linestyle="--", linewidth=1, label=f"training length {train_len}")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label=f"chance {chance:.3g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("accuracy (answer tokens)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)




def plot_recall_vs_state(rows: list[dict[str, Any]], path: Path, title: str, chance: float | None) -> None:
    """Accuracy against decode-state bytes per sequence (log axis): a line per series, one panel per context length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({r["length"] for r in rows})
    fig, axes = plt.subplots(1, len(lengths), figsize=(6.5 * len(lengths), 4.5), squeeze=False, sharey=True)
    for ax, length in zip(axes[0], lengths, strict=True):
        at = [r for r in rows if r["length"] == length]
        for series in dict.fromkeys(r["series"] for r in at):  # first-seen order
            points = sorted((r["state_bytes"], r["accuracy"]) for r in at if r["series"] == series)
            ax.plot([b for b, _ in points], [a for _, a in points], marker="o", label=series)
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label=f"chance {chance:.3g}")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"decode-state bytes per sequence at L={length} (fp32)")
        ax.set_title(f"L = {length}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("accuracy (answer tokens)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_context_curve(rows: list[dict[str, Any]], path: Path, train_contexts: list[int], baseline: float,
                       references: Sequence[str] = ()) -> None:
    """In-context regression: MSE against the number of context points, one line per model (black, dashed or dotted,
    for the `references`), the training N and the zero predictor's MSE marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colours = iter(plt.get_cmap("tab20").colors)
    for label in dict.fromkeys(r["model"] for r in rows):  # first-seen order: the models, then the references
        points = sorted((r["num_context"], r["mse"]) for r in rows if r["model"] == label)
        if label in references:
            style = dict(color="black", linestyle=["--", ":", "-."][list(references).index(label) % 3], linewidth=1.5)
        else:
            style = dict(color=next(colours, None), marker="o", markersize=3)
        ax.plot(*zip(*points, strict=True), label=label, **style)
    for n in train_contexts:
        ax.axvline(n, color="grey", linestyle=":", linewidth=1, label=f"training N = {n}")
    ax.axhline(baseline, color="grey", linestyle="-.", linewidth=1, label=f"predict 0 (MSE {baseline:.3g})")
    top = max(r["mse"] for r in rows)
    ax.set_ylim(0, 1.1 * min(top, 2 * baseline))  # an untrained-looking model far above the prior would flatten the rest
    ax.set_xticks(sorted({r["num_context"] for r in rows}))
    ax.set_xlabel("context points N")
    ax.set_ylabel("MSE at the query (held-out tasks)")
    ax.set_title("in-context linear regression: loss against context size")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
