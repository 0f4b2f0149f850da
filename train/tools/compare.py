"""`seqmix compare`: train every mixer at one matched size on MQAR, benchmark them, write one report."""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from seqmix import archs
from seqmix.train.callbacks import PerfMonitor
from seqmix.train.data import get_task
from seqmix.train.io import atomic_write
from seqmix.train.module import LMTask, check_optimizer_args
from seqmix.train.preflight import unwritable
from seqmix.train.progress import progress_bar
from seqmix.train.tools.bench import format_summary, parse_mixer, quick, run_bench, write_outputs
from seqmix.train.tools.bench.config import PATTERN_HELP

DEFAULT_MIXERS = ("attention", "linear_attention", "mamba")
REPORT = "report.md"
TASK = "mqar"  # the registered task compare trains on (its options: --vocab-size, --seq-len, --kv-pairs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="seqmix compare",
        description="Train each mixer at one matched parameter budget on MQAR, run the quick scaling benchmark, "
        "and write a report (Markdown table + plots). Runs on a CPU in minutes; no data, no account.",
    )
    p.add_argument("--out", default="runs/compare", help="report directory (default: %(default)s)")
    p.add_argument("--mixers", nargs="+", default=list(DEFAULT_MIXERS),
                   help=f"arms, each {PATTERN_HELP}; 'all' stands for every registered mixer "
                   f"(default: {' '.join(DEFAULT_MIXERS)})")
    p.add_argument("--params", type=int, default=100_000, help="non-embedding parameter budget (default: %(default)s)")
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=3000, help="training steps per mixer (default: %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: %(default)s)")
    p.add_argument("--min-lr-ratio", type=float, default=1.0,
                   help="final lr / peak lr of the cosine decay after warmup; 1 keeps the lr constant (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=32, help="MQAR sequence length (default: %(default)s)")
    p.add_argument("--kv-pairs", type=int, default=4, help="MQAR key-value pairs (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--heads", type=int, default=2,
                   help="heads of every mixer that has them (attention, linear attention; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bench", action="store_true", help="skip the scaling benchmark")
    return p


def expand_mixers(mixers: list[str]) -> list[str]:
    """The arms to run: 'all' becomes every registered mixer (in registry order); duplicates are dropped."""
    arms = [m for entry in mixers for m in (archs.MIXERS if entry == "all" else [entry])]
    return list(dict.fromkeys(arms))


def _check(args: argparse.Namespace) -> None:
    for field in ("params", "n_layers", "steps", "seq_len", "kv_pairs", "vocab_size", "batch_size", "heads"):
        if getattr(args, field) < 1:
            raise ValueError(f"--{field.replace('_', '-')} must be a positive integer, got {getattr(args, field)}")
    for label in args.mixers:  # unknown names, bad options, a pattern that does not divide --n-layers
        parse_mixer(label).model_config(lambda name: mixer_args(name, args), n_layers=args.n_layers)
    check_optimizer_args(lr=args.lr, min_lr_ratio=args.min_lr_ratio)  # LMTask's own check, before any training
    out = Path(args.out)
    problem = unwritable(out)  # before mkdir: a file in the way is a clear error, not a traceback
    if problem:
        raise ValueError(f"--out {str(out)!r} is not writable: {problem}")
    out.mkdir(parents=True, exist_ok=True)


def mixer_args(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The mixer options compare sets: --heads for every mixer whose constructor takes n_heads."""
    takes_heads = "n_heads" in inspect.signature(archs.get_mixer(name)).parameters
    return {"n_heads": args.heads} if takes_heads else {}


def train_one(label: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Fit one arm (a mixer or a hybrid pattern) on MQAR; return its sizes, validation accuracy and throughput."""
    L.seed_everything(args.seed, verbose=False)
    data = get_task(TASK)(
        vocab_size=args.vocab_size, seq_len=args.seq_len, num_kv_pairs=args.kv_pairs, batch_size=args.batch_size,
        num_train_examples=max(args.steps * args.batch_size // 4, 2_000), num_val_examples=1_000, seed=args.seed,
    )
    config = parse_mixer(label).model_config(lambda name: mixer_args(name, args), n_layers=args.n_layers,
                                             vocab_size=args.vocab_size)
    task = LMTask(config, param_budget=args.params, lr=args.lr, warmup_steps=min(300, args.steps // 10),
                  min_lr_ratio=args.min_lr_ratio)
    perf = PerfMonitor(window=50)
    run_name = re.sub(r"[^\w.+=-]", "_", label)  # a pattern's * and : do not belong in a folder name
    trainer = L.Trainer(
        max_steps=args.steps, accelerator="auto", devices=1, logger=CSVLogger(out / "train", name=run_name),
        callbacks=[perf, progress_bar()], enable_checkpointing=False, enable_model_summary=False, gradient_clip_val=1.0,
        val_check_interval=None, check_val_every_n_epoch=None, limit_val_batches=0, log_every_n_steps=25,
    )
    start = time.perf_counter()
    trainer.fit(task, datamodule=data)
    train_s = time.perf_counter() - start
    tokens_per_s = trainer.callback_metrics.get("perf/tokens_per_s")  # read before validate() resets the metrics
    trainer.limit_val_batches = 1.0
    metrics = trainer.validate(task, datamodule=data, verbose=False)[0]
    size = task.model_summary()
    return {
        "mixer": label,
        **{k: size[k] for k in ("mixer_name", "params_non_embedding", "d_model")},
        "val_acc": float(metrics["val/acc"]),
        "val_loss": float(metrics["val/loss"]),
        "chance_acc": 2 / args.vocab_size,
        "train_tokens_per_s": float(tokens_per_s) if tokens_per_s is not None else None,
        "train_s": train_s,
    }


def _schedule(args: argparse.Namespace) -> str:
    return "constant" if args.min_lr_ratio == 1 else f"cosine to {args.min_lr_ratio:g}×"


def _fmt_count(n: float | None, unit: str = "") -> str:
    if n is None:
        return "–"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def _bench_cells(name: str, rows: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's numbers for one mixer: train tokens/s per length, exponent, peak memory, decode state."""
    mine = [r for r in rows if r["mixer"] == name and r["status"] == "ok"]
    train = {r["seq_len"]: r for r in mine if r["mode"] == "train"}
    decode = {r["seq_len"]: r for r in mine if r["mode"] == "decode"}
    fit = (summary["fits"].get("train", {}).get(name) or {}).get("time")
    longest = max(train) if train else None
    return {
        "tokens_per_s": {n: r["tokens_per_s"] for n, r in sorted(train.items())},
        "exponent": fit["exponent"] if fit else None,
        "peak_mem": (longest, train[longest]["peak_mem_bytes"], train[longest]["mem_kind"]) if longest else None,
        "state": {n: r["state_bytes"] for n, r in sorted(decode.items())},
    }


def report(trained: list[dict[str, Any]], bench: tuple[list, dict] | None, args: argparse.Namespace) -> str:
    """The Markdown report: one row per mixer, then the benchmark's own summary."""
    lengths = sorted({r["seq_len"] for r in bench[0] if r["mode"] == "train"}) if bench else []
    shown = [lengths[0], lengths[-1]] if len(lengths) >= 2 else lengths
    head = ["mixer", "non-emb. params", f"MQAR acc (L={args.seq_len}, {args.kv_pairs} kv)"]
    head += [f"train tok/s L={n}" for n in shown]
    head += ["time exponent (train)", "peak mem (train, longest L)", "decode state (shortest → longest L)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in trained:
        cells = [t["mixer"], f"{t['params_non_embedding']:,}", f"{t['val_acc']:.3f}"]
        if bench:
            b = _bench_cells(t["mixer"], *bench)
            cells += [_fmt_count(b["tokens_per_s"].get(n)) for n in shown]
            cells.append(f"{b['exponent']:.2f}" if b["exponent"] is not None else "–")
            cells.append(f"{_fmt_count(b['peak_mem'][1], 'B')} ({b['peak_mem'][2]}, L={b['peak_mem'][0]})"
                         if b["peak_mem"] else "–")
            states = list(b["state"].values())
            cells.append(f"{_fmt_count(states[0], 'B')} → {_fmt_count(states[-1], 'B')}" if states else "–")
        else:
            cells += ["–"] * (len(head) - 3)
        lines.append("| " + " | ".join(cells) + " |")
    chance = trained[0]["chance_acc"] if trained else 0
    notes = [
        "",
        f"MQAR: {args.steps} steps, batch {args.batch_size}, vocab {args.vocab_size}, {args.n_layers} layers, "
        f"lr {args.lr:g} (after warmup {_schedule(args)}), {args.heads} heads where the mixer has heads; "
        f"every model sized to {args.params:,} non-embedding parameters (d_model: "
        + ", ".join(f"{t['mixer']} {t['d_model']}" for t in trained) + "); "
        f"accuracy over the queried values of 1,000 held-out sequences (chance ≈ {chance:.3f}). Training at that "
        "length: " + ", ".join(f"{t['mixer']} {_fmt_count(t['train_tokens_per_s'])} tok/s, {t['train_s']:.0f} s"
                               for t in trained) + ".",
    ]
    if bench:
        env = bench[1]["environment"]
        models = bench[1]["models"]
        notes.append(
            f"Benchmark (`seqmix bench --quick`): {env['device']} ({env['device_name']}), torch {env['torch_version']}, "
            f"{env['threads']} thread(s); its models are sized to "
            + ", ".join(f"{m} {v['params_non_embedding']:,}" for m, v in models.items() if m in {t['mixer'] for t in trained})
            + " non-embedding parameters (a small width, so that attention's L² term shows at short lengths). "
            "Exponent: slope of log(time per training step) against log(L)."
        )
        notes += ["", "Plots: " + ", ".join(f"![{p}](bench/{p})" for p in bench[1].get("plots", [])), "",
                  "```", format_summary(bench[1]), "```"]
    return "# seqmix compare\n\n" + "\n".join(lines + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `seqmix compare`."""
    args = build_parser().parse_args(argv)
    args.mixers = expand_mixers(args.mixers)
    try:
        _check(args)
    except ValueError as e:
        build_parser().error(str(e))
    out = Path(args.out)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    os.environ.setdefault("WANDB_MODE", "disabled")
    started = time.perf_counter()
    trained = []
    for i, name in enumerate(args.mixers, 1):
        print(f"[compare] {i}/{len(args.mixers)} training {name} on MQAR ({args.steps} steps)", flush=True)
        trained.append(train_one(name, args, out))
        print(f"[compare] {name}: val acc {trained[-1]['val_acc']:.3f} in {trained[-1]['train_s']:.0f}s", flush=True)
    bench = None
    if not args.no_bench:
        print("[compare] scaling benchmark (quick preset)", flush=True)
        bench_dir = out / "bench"
        if bench_dir.exists():
            shutil.rmtree(bench_dir)
        arms = args.mixers + (["attention_explicit"] if "attention" in args.mixers else [])
        config = quick(mixers=tuple(dict.fromkeys(arms)), n_layers=args.n_layers, out_dir=str(bench_dir))
        rows = run_bench(config, progress=sys.stderr.isatty())  # a log file gets no redrawn bar
        bench = (rows, write_outputs(rows, bench_dir, {"config": "quick"}))
    text = report(trained, bench, args)
    atomic_write(out / REPORT, text)
    atomic_write(out / "train_results.json", json.dumps(trained, indent=2) + "\n")
    print(text)
    print(f"[compare] report written to {out / REPORT} in {time.perf_counter() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    raise SystemExit(main())
