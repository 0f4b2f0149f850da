"""The command line of `seqmix evaluate`: load and check every checkpoint and variant first, then sweep and write."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqmix.archs import LanguageModel, model_summary

from ...data.synthetic import check_depth
from ...io import atomic_write
from .grid import length_curve, sweep, write_csv
from .plots import plot_curve, plot_heatmap, plot_recall_vs_state
from .regression import is_regression_checkpoint
from .regression import run as run_regression
from .tasks import DEFAULT_DEPTHS, DEFAULT_FACTORS, DEPTH_LABELS, TASKS, Task, build_task, infer_task, load_checkpoint
from .variants import Variant, check_kv_policies, rope_scalings, takes_kv_policy, variants


@dataclass
class Plan:
    """One curve to draw: a checkpoint's model under one variant, over its lengths x depths."""

    label: str
    base_label: str
    ckpt: Path
    model: LanguageModel
    task: Task
    lengths: list[int]
    depths: list[float | None]
    variant: Variant
    prefill_len: int | None  # None: the parallel forward; else prefill this many tokens and step the rest


def build_parser() -> argparse.ArgumentParser:
    """The command line of `seqmix evaluate`."""
    p = argparse.ArgumentParser(
        prog="seqmix evaluate",
        description="Sweep trained checkpoints over context length (x depth): accuracy heatmap and extrapolation curve; "
        "optionally under RoPE scalings and decode-time KV-cache policies, or as recall against decode-state bytes.",
    )
    p.add_argument("--ckpt", nargs="+", required=True, type=Path, help="one or more checkpoints (one curve each)")
    p.add_argument("--task", choices=list(TASKS), help="the task (default: the data class recorded in the checkpoint)")
    p.add_argument("--labels", nargs="+", help="a label per checkpoint (default: its mixer name)")
    p.add_argument("--lengths", nargs="+", type=int, help="context lengths (default: training length x 1, 2, 4, 8, 16); "
                   "for in-context regression, numbers of context points N (default 1 .. twice the training N)")
    p.add_argument("--depths", nargs="+", type=float, help="depths in [0, 1] for tasks with a depth (default: 0 .25 .5 .75 1)")
    p.add_argument("--rope-scaling", nargs="+", metavar="METHOD",
                   help="evaluate every RoPE checkpoint once per method: none, pi, ntk, yarn (one curve each)")
    p.add_argument("--rope-factor", type=float,
                   help="the RoPE scaling factor (default: the longest length / the training length, at least 1)")
    p.add_argument("--kv-policy", nargs="+", metavar="SPEC",
                   help="decode attention under each KV-cache policy: full, window:W, sinks:S+W, heavy_hitters:B, or a "
                   "per-layer schedule (one curve each); the prompt is prefilled up to --prefill-len and the rest stepped")
    p.add_argument("--prefill-len", type=int, default=1,
                   help="with --kv-policy: tokens prefilled before step-decoding the rest (default 1: every later "
                   "token is ingested by step, under the policy)")
    p.add_argument("--recall-vs-state", action="store_true",
                   help="write recall_vs_state.csv / .png: accuracy against decode-state bytes per sequence, a line per "
                   "label (mixer) and KV-policy family; checkpoints with the same label form one line")
    p.add_argument("--gd-comparison", action="store_true",
                   help="in-context regression checkpoints: also write gd_comparison.csv, each model and its untrained "
                   "twin against one step of gradient descent on the same contexts (von Oswald et al. 2023)")
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


def plan(args: argparse.Namespace, device: torch.device) -> tuple[str, list[Plan]]:
    """Load every checkpoint and check every length, depth, scaling and policy on it, before anything is evaluated."""
    for name, value in (("--num-examples", args.num_examples), ("--batch-size", args.batch_size),
                        ("--max-tokens", args.max_tokens), ("--prefill-len", args.prefill_len)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if args.labels and len(args.labels) != len(args.ckpt):
        raise ValueError(f"--labels gives {len(args.labels)} labels for {len(args.ckpt)} checkpoints")
    if args.rope_factor is not None and not args.rope_factor >= 1:
        raise ValueError(f"--rope-factor must be a number >= 1, got {args.rope_factor:g}")
    policies = check_kv_policies(args.kv_policy)
    plans: list[Plan] = []
    task_name = args.task
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
        base = args.labels[i] if args.labels else model.config.mixer_name  # in recall mode: the line it is on
        unique = f"{base}-{i}" if base in {p.base_label for p in plans} else base  # one curve per checkpoint
        scalings = rope_scalings(args.rope_scaling, args.rope_factor, task.train_len, max(lengths))
        own = policies if takes_kv_policy(model) else [None]  # a recurrent state has no cache to prune
        for variant in variants(scalings, own):
            try:
                variant.apply(model)  # fails here, before any sweep, if the model cannot take it
            except ValueError as err:
                raise ValueError(f"{ckpt}: {err}") from err
            # a policy acts only while decoding; a model it does not apply to decodes as its forward (the contract)
            plans.append(Plan(unique + variant.suffix, base, ckpt, model, task, lengths, depths, variant,
                              args.prefill_len if variant.kv_policy is not None else None))
    return task_name, plans


def run(args: argparse.Namespace, argv: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate every checkpoint (under every variant) over the grid; write CSVs, plots and summary.json to args.out."""
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    check_kv_policies(args.kv_policy)  # a bad policy fails before any checkpoint is read
    kinds = {is_regression_checkpoint(path) for path in args.ckpt}
    if kinds == {True}:
        return run_regression(args, argv, build_parser(), device)
    if True in kinds:
        raise ValueError("--ckpt mixes in-context regression checkpoints with token-task ones; evaluate them separately")
    if args.gd_comparison:
        raise ValueError("--gd-comparison compares in-context regression checkpoints with gradient descent; these are "
                         "token-task checkpoints")
    task_name, plans = plan(args, device)
    args.out.mkdir(parents=True, exist_ok=True)
    grid_rows, curves, runs, recall_rows = [], {}, [], []
    for p in plans:
        print(f"seqmix evaluate: {p.ckpt} ({p.label}, {task_name}, trained at L={p.task.train_len})", file=sys.stderr)
        p.variant.apply(p.model)
        size = model_summary(p.model.config, p.model)
        rows = sweep(p.model, p.task, p.lengths, p.depths, args.num_examples, args.seed, args.batch_size,
                     args.max_tokens, device, log=lambda s: print(s, file=sys.stderr), prefill_len=p.prefill_len)
        curves[p.label] = length_curve(rows)
        if p.task.has_depth and not args.recall_vs_state:
            grid_rows += [{"model": p.label, **r} for r in rows]
            name = "heatmap.png" if len(plans) == 1 else f"heatmap_{p.label.replace(' ', '_')}.png"
            plot_heatmap(rows, args.out / name, f"{task_name}: {p.label}, accuracy", p.task.train_len,
                         DEPTH_LABELS[task_name])
        if args.recall_vs_state:
            series = p.base_label + (f" {p.variant.policy_kind}" if p.variant.kv_policy else "")
            recall_rows += [{
                "series": series, "model": p.label, "mixer": size["mixer_name"], "ckpt": str(p.ckpt),
                "kv_policy": p.variant.kv_policy or "", "length": r["length"],
                "state_bytes": p.model.state_bytes(r["length"], 1, torch.float32),
                "params_non_embedding": size["params_non_embedding"], **{k: r[k] for k in (
                    "accuracy", "exact_match", "n_examples", "n_tokens")},
            } for r in curves[p.label]]
        runs.append({"ckpt": str(p.ckpt), "label": p.label, "mixer": size["mixer_name"],
                     "params_non_embedding": size["params_non_embedding"], "train_len": p.task.train_len,
                     "data_hparams": p.task.hparams, "chance": p.task.chance, "lengths": p.lengths,
                     "depths": [d for d in p.depths if d is not None],
                     "rope_scaling": None if p.variant.rope is None else vars(p.variant.rope),
                     "kv_policy": p.variant.kv_policy, "prefill_len": p.prefill_len})
    curve_rows = [{"model": label, **r} for label, rows in curves.items() for r in rows]
    write_csv(curve_rows, args.out / "extrapolation.csv")
    chances = sorted({r["chance"] for r in runs if r["chance"] is not None})
    plot_curve(curves, args.out / "extrapolation.png", f"{task_name}: accuracy against context length",
               sorted({r["train_len"] for r in runs}), chances[0] if len(chances) == 1 else None)
    if grid_rows:
        write_csv(grid_rows, args.out / "heatmap.csv")
    if recall_rows:
        write_csv(recall_rows, args.out / "recall_vs_state.csv")
        plot_recall_vs_state(recall_rows, args.out / "recall_vs_state.png",
                             f"{task_name}: recall against decode-state bytes", chances[0] if len(chances) == 1 else None)
    summary = {
        "command": " ".join(["seqmix evaluate", *map(str, argv)]),
        "task": task_name, "runs": runs, "lengths": sorted({r["length"] for r in curve_rows}),
        "depths": sorted({d for r in runs for d in r["depths"]}), "chance": chances,
        "num_examples": args.num_examples, "seed": args.seed,
        "device": str(device), "files": sorted(p.name for p in args.out.iterdir() if p.suffix in (".csv", ".png")),
    }
    atomic_write(args.out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    print(f"seqmix evaluate: wrote {', '.join(summary['files'])} to {args.out}", file=sys.stderr)
    return summary
