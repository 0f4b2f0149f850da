"""`seqmix bench`: the scaling benchmark from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from ...preflight import unwritable
from .config import DEFAULT_MIXERS, DEFAULT_PARAMS, PATTERN_HELP, QUICK, BenchConfig, with_preset
from .measure import DTYPES, MODES
from .output import replot, write_outputs
from .run import CSV_NAME, run_bench
from .summary import STATS, format_summary


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every default is None so that --quick can tell what was given)."""
    p = argparse.ArgumentParser(
        prog="seqmix bench",
        description="Throughput and memory of sequence mixers against sequence length, at matched size.",
    )
    a = p.add_argument
    a("--mixers", nargs="+",
      help=f"arms, each {PATTERN_HELP} (default: {' '.join(DEFAULT_MIXERS)})")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--params", type=int, help=f"non-embedding parameter budget for every arm (default {DEFAULT_PARAMS:,})")
    size.add_argument("--d-model", type=int, help="one width for every arm instead of a parameter budget")
    a("--n-layers", type=int, help="layers (default 2)")
    a("--vocab-size", type=int, help="vocabulary (default 256)")
    a("--mlp-ratio", type=float, help="MLP hidden / d_model before size matching; 0 drops the MLP (default 4)")
    a("--seq-lens", type=int, nargs="+", help="sequence lengths (default 1024 2048 4096 8192 16384)")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, help="sequences per step (default 1)")
    batch.add_argument("--tokens-per-batch", type=int, help="fixed tokens per step: batch = tokens // L")
    a("--decode-batch", type=int, help="batch for decode (default: as --batch)")
    a("--modes", nargs="+", choices=MODES, help="what to time (default: all)")
    a("--decode-steps", type=int, help="tokens generated per timed decode repeat (default 16)")
    a("--dtype", choices=list(DTYPES), help="parameter and activation dtype (default float32)")
    a("--device", help="auto (cuda when present), cpu, cuda[:N] (default auto)")
    a("--repeats", type=int, help="timed repeats per point, at most (default 5)")
    a("--warmup", type=int, help="untimed calls before timing (default 1)")
    a("--min-time", type=float, dest="min_time_s", help="keep timing a point for at least this many seconds (default 0)")
    a("--rounds", type=int, help="sweep this many times, pooling each point's repeats (steadier on a busy machine)")
    a("--time-budget", type=float, dest="time_budget_s", help="seconds per point before it is killed (default 60)")
    a("--memory-limit-gb", type=float, help="CPU worker address-space cap (default half of physical memory)")
    a("--threads", type=int, help="torch threads per worker (default torch's)")
    a("--no-isolate", dest="isolate", action="store_const", const=False,
      help="measure in this process: no time limit, memory less clean")
    a("--seed", type=int, help="seed (default 0)")
    a("--quick", action="store_true", help="short preset (~2 min on 2 CPU cores) that still shows the slopes: "
      + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    a("--out", help="output folder (default runs/bench/<time>)")
    a("--overwrite", action="store_true", help="replace an existing bench.csv in --out")
    a("--replot", metavar="CSV", help="only rebuild summary.json and plots from an existing CSV (into --out or its folder)")
    a("--fit-from", type=int, metavar="L", help="fit exponents over lengths >= L only (the asymptotic regime)")
    a("--stat", choices=STATS, help="per-point time the fits and ratios use: median (default) or min over repeats "
      "(steadier when other work shares the machine)")
    a("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """A BenchConfig from parsed arguments: the defaults, then --quick's preset, then what was given."""
    given = {
        k: v for k, v in vars(args).items()
        if v is not None and k not in ("quick", "out", "overwrite", "replot", "no_progress", "fit_from", "stat")
    }
    for key in ("mixers", "seq_lens", "modes"):
        if key in given:
            given[key] = tuple(given[key])
    return BenchConfig(**with_preset(QUICK if args.quick else {}, given))


def main(argv: list[str] | None = None) -> int:
    """Run `seqmix bench` with argv (default sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.replot:
            problem = unwritable(args.out or Path(args.replot).parent)
            if problem:
                raise ValueError(f"cannot write the plots to {str(args.out or Path(args.replot).parent)!r}: {problem}")
            summary = replot(args.replot, args.out, args.fit_from, args.stat)
            print(format_summary(summary))
            print(f"rewrote summary.json and {', '.join(summary['plots'])} in {args.out or Path(args.replot).parent}")
            return 0
        config = config_from_args(args)
        out = Path(args.out or Path("runs") / "bench" / datetime.now().strftime("%Y%m%d-%H%M%S"))
        if (out / CSV_NAME).exists() and not args.overwrite:
            raise ValueError(f"{out / CSV_NAME} exists; pass --overwrite to replace it or choose another --out")
        problem = unwritable(out)
        if problem:
            raise ValueError(f"--out {str(out)!r} cannot be written: {problem}")
        config.out_dir = str(out)
    except ValueError as exc:
        print(f"seqmix bench: error: {exc}", file=sys.stderr)
        return 2

    print(f"seqmix bench: {len(config.mixers)} mixers x {len(config.modes)} modes x {len(config.seq_lens)} lengths, "
          f"{config.sizing()}, device {config.device}, writing {out / CSV_NAME}", flush=True)
    t0 = time.perf_counter()
    rows = run_bench(config, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    summary = write_outputs(rows, out, {"config": asdict(config), "wall_s": round(wall, 1),
                                        "command": "seqmix bench " + " ".join(argv if argv is not None else sys.argv[1:])},
                            args.fit_from, args.stat or "median")
    print(format_summary(summary))
    print(f"wall time {wall:.0f} s; wrote {CSV_NAME}, summary.json, {', '.join(summary['plots'])} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
