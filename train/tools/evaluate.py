"""`seqmix evaluate`: sweep trained checkpoints over context length (x needle depth) on fresh examples of their task.

Writes to --out: `extrapolation.csv` / `extrapolation.png` (accuracy against context length, one line per checkpoint,
the training length marked) and, for tasks with a depth (needle, multi_needle, induction), `heatmap.csv` /
`heatmap[_<label>].png` (context length x depth), plus `summary.json` (what was run). CSVs are tidy: one row per
(model, length[, depth]) with accuracy (over answer tokens), exact_match (over examples), n_examples and n_tokens.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqmix.archs import LanguageModel

from ..data import IGNORE_INDEX
from ..data.synthetic import check_depth, seeded_generator

TASKS = {
    "needle": "seqmix.train.data.needle.NeedleDataModule",
    "multi_needle": "seqmix.train.data.needle.MultiNeedleDataModule",
    "induction": "seqmix.train.data.induction.InductionDataModule",
    "selective_copying": "seqmix.train.data.copying.SelectiveCopyingDataModule",
    "mqar": "seqmix.train.data.mqar.MQARDataModule",
}
"""Task name -> data module class path (the class a checkpoint's data hyperparameters are given back to)."""

DEPTH_LABELS = {
    "needle": "needle depth (fraction of context)",
    "multi_needle": "queried needle's depth (fraction of context)",
    "induction": "first trigger's depth (fraction of context)",
}
"""What depth means, per task that has one (the heatmap's y axis)."""

DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_FACTORS = (1, 2, 4, 8, 16)  # default lengths: the training length times these


@dataclass
class Task:
    """A task rebuilt from a checkpoint's data hyperparameters, able to draw examples at any length (and depth)."""

    name: str
    datamodule: Any
    hparams: dict[str, Any]
    train_len: int
    has_depth: bool
    chance: float | None

    def sample(self, n: int, length: int, depth: float | None, seed: int) -> dict[str, Tensor]:
        """n examples at this length (and depth), from a stream that depends only on (seed, length, depth)."""
        if self.name == "mqar":
            from ..data.mqar import generate_mqar

            dm = self.datamodule
            rng = np.random.default_rng([seed, 1000, length])  # not one of MQAR's split streams (0, 1, 2)
            inputs, labels = generate_mqar(n, length, dm.num_kv_pairs, dm.vocab_size, dm.power_a, rng)
            return {"input_ids": inputs, "labels": labels}
        return self.datamodule.generate(n, length, depth, generator=eval_generator(seed, length, depth))

    def check(self, length: int) -> None:
        """Raise a ValueError naming the length if the task cannot be built there."""
        if self.name == "mqar":
            from ..data.mqar import check_mqar

            dm = self.datamodule
            check_mqar(length, dm.num_kv_pairs, dm.vocab_size, dm.power_a)
        else:
            self.datamodule.check(length)


def eval_generator(seed: int, length: int, depth: float | None) -> torch.Generator:
    """The random stream of one grid cell (separate from the train / val / test streams)."""
    return seeded_generator(seed, "evaluate", length, "random" if depth is None else repr(float(depth)))


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def run_config(ckpt: Path) -> dict[str, Any] | None:
    """The LightningCLI config.yaml of the run a checkpoint belongs to (<run>/checkpoints/x.ckpt), if there is one."""
    import yaml

    for candidate in (ckpt.parent.parent / "config.yaml", ckpt.parent / "config.yaml"):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text())
    return None


def infer_task(ckpt: Path, hparams: dict[str, Any]) -> str:
    """The task of a checkpoint: from the data class the CLI recorded in its hyperparameters, else its config.yaml."""
    class_path = hparams.get("_class_path") or ((run_config(ckpt) or {}).get("data") or {}).get("class_path")
    for name, path in TASKS.items():
        if class_path == path:
            return name
    raise ValueError(
        f"cannot tell the task of {ckpt} (data class {class_path!r}); pass --task, one of {', '.join(TASKS)}"
    )


def load_checkpoint(path: Path, device: torch.device) -> tuple[LanguageModel, dict[str, Any]]:
    """The trained LanguageModel (eval mode, on device) and the data module's hyperparameters it was trained with."""
    from ..module import LMTask

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    task = LMTask.load_from_checkpoint(path, map_location=device)
    raw = torch.load(path, map_location="cpu", weights_only=False)
    hparams = dict(raw.get("datamodule_hyper_parameters") or {})
    if not hparams:  # e.g. a checkpoint saved without a data module: fall back to the run's config.yaml
        hparams = dict(((run_config(path) or {}).get("data") or {}).get("init_args") or {})
    return task.model.to(device).eval(), hparams


def build_task(name: str, hparams: dict[str, Any], model_vocab: int) -> Task:
    """Rebuild the data module of `name` from hyperparameters (default: the class's, at the model's vocabulary)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    cls = _import(TASKS[name])
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")} or {"vocab_size": model_vocab}
    try:
        dm = cls(**hparams)
    except TypeError as err:
        raise ValueError(f"the checkpoint's data hyperparameters {hparams} do not fit task {name!r}: {err}") from err
    if dm.vocab_size > model_vocab:
        raise ValueError(f"task {name!r} uses vocab_size={dm.vocab_size} but the model only has {model_vocab} tokens")
    return Task(name, dm, hparams, dm.seq_len, bool(getattr(dm, "has_depth", False)), getattr(dm, "chance_accuracy", None))


@torch.no_grad()
def score(model: LanguageModel, batch: dict[str, Tensor], batch_size: int, device: torch.device) -> dict[str, int]:
    """Argmax predictions at the labelled positions: correct and total answer tokens, exact and total examples."""
    correct = tokens = exact = 0
    for i in range(0, batch["input_ids"].shape[0], batch_size):
        inputs = batch["input_ids"][i : i + batch_size].to(device)
        labels = batch["labels"][i : i + batch_size].to(device)
        mask = labels != IGNORE_INDEX
        hit = (model(inputs).argmax(-1) == labels) & mask
        correct, tokens = correct + int(hit.sum()), tokens + int(mask.sum())
        exact += int((hit.sum(1) == mask.sum(1)).sum())
    return {"correct": correct, "n_tokens": tokens, "exact": exact, "n_examples": batch["input_ids"].shape[0]}


def sweep(
    model: LanguageModel,
    task: Task,
    lengths: Sequence[int],
    depths: Sequence[float | None],
    num_examples: int,
    seed: int,
    batch_size: int,
    max_tokens: int,
    device: torch.device,
    log: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """One row per (length, depth): accuracy over answer tokens, exact match over examples, and the counts."""
    rows = []
    for length in lengths:
        for depth in depths:
            start = time.perf_counter()
            batch = task.sample(num_examples, length, depth, seed)
            s = score(model, batch, max(1, min(batch_size, max_tokens // length)), device)
            rows.append({
                "length": length, "depth": "" if depth is None else depth,
                "accuracy": s["correct"] / max(1, s["n_tokens"]), "exact_match": s["exact"] / s["n_examples"],
                "n_examples": s["n_examples"], "n_tokens": s["n_tokens"],
            })
            where = "" if depth is None else f" depth={depth:g}"
            log(f"  L={length}{where}: accuracy {rows[-1]['accuracy']:.3f} ({time.perf_counter() - start:.1f}s)")
    return rows


def length_curve(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collapse a grid over depth: per length, accuracy over all answer tokens, exact match over all examples."""
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        acc = out.setdefault(r["length"], {"length": r["length"], "correct": 0, "exact": 0, "n_examples": 0, "n_tokens": 0})
        acc["correct"] += round(r["accuracy"] * r["n_tokens"])
        acc["exact"] += round(r["exact_match"] * r["n_examples"])
        acc["n_examples"] += r["n_examples"]
        acc["n_tokens"] += r["n_tokens"]
    return [
        {"length": a["length"], "accuracy": a["correct"] / max(1, a["n_tokens"]), "exact_match": a["exact"] / a["n_examples"],
         "n_examples": a["n_examples"], "n_tokens": a["n_tokens"]}
        for a in out.values()
    ]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Tidy CSV, columns in the rows' order."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


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


def build_parser() -> argparse.ArgumentParser:
    """The command line of `seqmix evaluate`."""
    p = argparse.ArgumentParser(
        prog="seqmix evaluate",
        description="Sweep trained checkpoints over context length (x depth): accuracy heatmap and extrapolation curve.",
    )
    p.add_argument("--ckpt", nargs="+", required=True, type=Path, help="one or more checkpoints (one curve each)")
    p.add_argument("--task", choices=list(TASKS), help="the task (default: the data class recorded in the checkpoint)")
    p.add_argument("--labels", nargs="+", help="a label per checkpoint (default: its mixer name)")
    p.add_argument("--lengths", nargs="+", type=int, help="context lengths (default: training length x 1, 2, 4, 8, 16)")
    p.add_argument("--depths", nargs="+", type=float, help="depths in [0, 1] for tasks with a depth (default: 0 .25 .5 .75 1)")
    p.add_argument("--num-examples", type=int, default=200, help="fresh examples per grid cell (default 200)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per forward pass, at most (default 32)")
    p.add_argument("--max-tokens", type=int, default=1 << 17, help="tokens per forward pass, at most (default 131072)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation examples (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    return p


def evaluate_cli(argv: Sequence[str]) -> dict[str, Any]:
    """Run `seqmix evaluate ARGV` and return the summary it writes (bad requests raise ValueError / FileNotFoundError)."""
    argv = list(argv)
    return run(build_parser().parse_args(argv), argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `seqmix evaluate`: 0 when the outputs are written, 2 (one error line) for a bad request."""
    try:
        evaluate_cli(sys.argv[1:] if argv is None else argv)
    except (ValueError, FileNotFoundError) as err:
        print(f"seqmix evaluate: error: {err}", file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate every checkpoint over the grid; write CSVs, plots and summary.json to args.out."""
    for name, value in (("--num-examples", args.num_examples), ("--batch-size", args.batch_size),
                        ("--max-tokens", args.max_tokens)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if args.labels and len(args.labels) != len(args.ckpt):
        raise ValueError(f"--labels gives {len(args.labels)} labels for {len(args.ckpt)} checkpoints")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    # Load and check everything first, so a bad checkpoint or length fails before any long sweep.
    plans, task_name = [], args.task
    for i, ckpt in enumerate(args.ckpt):
        model, hparams = load_checkpoint(ckpt, device)
        name = args.task or infer_task(ckpt, hparams)
        if task_name is not None and name != task_name:
            raise ValueError(f"{ckpt} was trained on {name!r}, not {task_name!r} like the checkpoints before it")
        task_name = name
        task = build_task(task_name, hparams, model.config.vocab_size)
        lengths = args.lengths or [task.train_len * f for f in DEFAULT_FACTORS]
        for length in lengths:
            if length < 1:
                raise ValueError(f"--lengths must be positive, got {length}")
            task.check(length)
        if task.has_depth:
            depths: list[float | None] = [check_depth(d) for d in (args.depths or DEFAULT_DEPTHS)]
        elif args.depths:
            raise ValueError(f"task {task_name!r} has no depth to sweep; drop --depths")
        else:
            depths = [None]
        label = args.labels[i] if args.labels else model.config.mixer_name
        if label in [p[0] for p in plans]:
            label = f"{label}-{i}"
        plans.append((label, ckpt, model, task, lengths, depths))

    args.out.mkdir(parents=True, exist_ok=True)
    grid_rows, curves, runs = [], {}, []
    for label, ckpt, model, task, lengths, depths in plans:
        print(f"seqmix evaluate: {ckpt} ({label}, {task_name}, trained at L={task.train_len})", file=sys.stderr)
        rows = sweep(model, task, lengths, depths, args.num_examples, args.seed, args.batch_size, args.max_tokens,
                     device, log=lambda s: print(s, file=sys.stderr))
        curves[label] = length_curve(rows)
        if task.has_depth:
            grid_rows += [{"model": label, **r} for r in rows]
            name = "heatmap.png" if len(plans) == 1 else f"heatmap_{label}.png"
            plot_heatmap(rows, args.out / name, f"{task_name}: {label}, accuracy", task.train_len, DEPTH_LABELS[task_name])
        runs.append({"ckpt": str(ckpt), "label": label, "mixer": model.config.mixer_name,
                     "params_non_embedding": model.param_count(embedding=False), "train_len": task.train_len,
                     "data_hparams": task.hparams})
    curve_rows = [{"model": label, **r} for label, rows in curves.items() for r in rows]
    write_csv(curve_rows, args.out / "extrapolation.csv")
    plot_curve(curves, args.out / "extrapolation.png", f"{task_name}: accuracy against context length",
               sorted({r["train_len"] for r in runs}), task.chance)
    if grid_rows:
        write_csv(grid_rows, args.out / "heatmap.csv")
    summary = {
        "command": " ".join(["seqmix evaluate", *map(str, argv)]),
        "task": task_name, "runs": runs, "lengths": sorted({r["length"] for r in curve_rows}),
        "depths": [d for d in depths if d is not None], "num_examples": args.num_examples, "seed": args.seed,
        "device": str(device), "files": sorted(p.name for p in args.out.iterdir() if p.suffix in (".csv", ".png")),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"seqmix evaluate: wrote {', '.join(summary['files'])} to {args.out}", file=sys.stderr)
    return summary
