"""`seqmix reproduce NAME`: run one reproduction (resumable) and set our numbers beside the paper's; `--list` them."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from .results import collect, draw, report, write_rows
from .runner import ReproduceError, ReproductionRunner
from .spec import SpecError, append_args, available, load

PACKAGE_ROOT = Path(__file__).resolve().parents[3] / "experiments" / "reproduce"
DEFAULT_OUT_ROOT = Path("runs") / "reproduce"


def default_root() -> Path:
    """experiments/reproduce under the working directory, else the one beside this source tree."""
    here = Path("experiments") / "reproduce"
    return here if here.is_dir() else PACKAGE_ROOT


def repository(root: Path) -> Path:
    """Where the steps run: the repository holding root (<repo>/experiments/reproduce), else the working directory;
    the steps name configs relative to it (experiments/configs/...)."""
    resolved = root.resolve()
    return resolved.parents[1] if resolved.parts[-2:] == ("experiments", "reproduce") else Path.cwd()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `seqmix reproduce`."""
    p = argparse.ArgumentParser(
        prog="seqmix reproduce",
        description="Re-run a published finding: the `seqmix fit` / `sweep` / `evaluate` steps of "
                    "experiments/reproduce/NAME/reproduce.yaml, then OUT/results.csv and OUT/comparison.md (ours beside "
                    "the paper's numbers). A rerun skips finished steps and resumes a killed one.",
    )
    p.add_argument("name", nargs="?", help="the reproduction (see --list)")
    p.add_argument("--list", action="store_true", help="list the reproductions and their claims")
    p.add_argument("--preset", default="full", help="tiny (a seconds-long smoke run) or full (the real run; default)")
    p.add_argument("--out", type=Path, default=None, help=f"run folder (default {DEFAULT_OUT_ROOT}/NAME/PRESET)")
    p.add_argument("--root", type=Path, default=None, help="folder of the reproductions (default experiments/reproduce)")
    p.add_argument("--rerun", nargs="+", default=[], metavar="STEP", help="run these steps again (and what reads them)")
    p.add_argument("--append", action="append", default=[], metavar="'KIND: ARGS'",
                   help="append ARGS to every fit, sweep or evaluate step, e.g. --append 'fit: --trainer.max_steps=100' "
                        "(repeatable); steps whose arguments change rerun (use another --out to keep both)")
    p.add_argument("--dry-run", action="store_true", help="print the steps' commands; run nothing")
    return p


def _list(root: Path) -> int:
    folders = available(root)
    if not folders:
        print(f"no reproductions under {root}", file=sys.stderr)
        return 2
    repros = [load(folder, "full") for folder in folders]
    width = max(len(r.name) for r in repros)
    for r in repros:
        print(f"{r.name:<{width}}  {r.claim}")
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of `seqmix reproduce`: 0 done, 1 a step failed, 2 bad input, 130 stopped."""
    args = build_parser().parse_args(argv)
    root = args.root or default_root()
    try:
        if args.list:
            return _list(root)
        if not args.name:
            raise SpecError("name a reproduction (seqmix reproduce --list shows them)")
        names = [f.name for f in available(root)]
        if args.name not in names:
            raise SpecError(f"unknown reproduction {args.name!r}; choose one of {', '.join(names) or '(none found)'}")
        repro = load(root / args.name, args.preset)
        for entry in args.append:
            kind, sep, extra = entry.partition(":")
            if not sep:
                raise SpecError(f"--append takes 'KIND: ARGS' (e.g. 'fit: --trainer.max_steps=100'), got {entry!r}")
            repro = append_args(repro, kind.strip(), extra)
        unknown = set(args.rerun) - {s.id for s in repro.steps}
        if unknown:
            raise SpecError(f"--rerun: unknown steps {sorted(unknown)}; this reproduction's: "
                            f"{', '.join(s.id for s in repro.steps)}")
    except SpecError as err:
        print(f"seqmix reproduce: error: {err}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else DEFAULT_OUT_ROOT / repro.name / repro.preset
    runner = ReproductionRunner(repro, out, cwd=repository(root))
    if args.dry_run:
        for step in repro.steps:
            print(f"{step.id}: {' '.join(['seqmix', *runner.render(step, resolve_checkpoints=False)[len(runner.program):]])}")
        return 0
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        runner.acquire()
        runner.run(force=set(args.rerun))
        write_rows(collect(repro, runner.out), runner.out / "results.csv")
        for plot in repro.plots:
            if draw(plot, runner.out) is None:
                print(f"seqmix reproduce: note: no rows to draw {plot.file} from", file=sys.stderr)
        print(report(repro, runner.out, runner.state))
    except ReproduceError as err:
        print(f"seqmix reproduce: error: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        print(f"seqmix reproduce: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("seqmix reproduce: stopped; finished steps are kept, rerun the command to continue", file=sys.stderr)
        return 130
    finally:
        runner.release()
        signal.signal(signal.SIGTERM, previous)
    print(f"results: {runner.out / 'results.csv'}; comparison: {runner.out / 'comparison.md'}")
    return 0
