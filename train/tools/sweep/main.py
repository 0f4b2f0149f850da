"""`seqmix sweep FILE`: run a W&B sweep file locally, with no W&B server."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .plan import PlannedRun, check_command, check_seqmix_arguments, plan_runs, render_command
from .results import OK, ResultsTable, best_row
from .runner import RunnerOptions, SweepRunError, SweepRunner, install_signal_handlers, restore_signal_handlers
from .spec import SweepSpec, SweepSpecError, load_spec

DEFAULT_OUT_ROOT = Path("runs") / "sweeps"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `seqmix sweep`."""
    p = argparse.ArgumentParser(
        prog="seqmix sweep",
        description="Run a W&B sweep file (method grid or random) locally: one subprocess per run, results in OUT/results.csv. "
                    "A rerun skips finished runs and reruns failed or killed ones.",
    )
    p.add_argument("file", type=Path, help="sweep YAML in W&B's format (the same file works with `wandb sweep`)")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT_ROOT}/<sweep name>)")
    p.add_argument("--max-runs", type=int, default=None, help="run at most N runs (default: the file's run_cap, else all)")
    p.add_argument("--workers", type=int, default=1, help="runs in parallel (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of random search (same seed, same runs; default 0)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and their commands; run and write nothing")
    p.add_argument("--wandb", choices=("offline", "disabled"), default="disabled",
                   help="W&B logging of each run: offline (WANDB_MODE=offline, group = sweep name; `wandb sync` later) "
                        "or disabled (default)")
    p.add_argument("--retries", type=int, default=2,
                   help="retries within this invocation of a run killed by a signal (default 2); other failures are "
                        "recorded and rerun by the next invocation")
    p.add_argument("--timeout", type=float, default=None, help="kill a run after this many seconds (default: no limit)")
    return p


def _warnings(spec: SweepSpec) -> list[str]:
    out = []
    if "early_terminate" in spec.raw:
        out.append("early_terminate is applied by W&B's server only; the local runner runs every run to the end")
    return out


def _dry_run(spec: SweepSpec, runs: list[PlannedRun], out: Path) -> None:
    table = ResultsTable(out / "results.csv") if (out / "results.csv").exists() else None
    print(f"sweep {spec.name!r} ({spec.method}): {len(runs)} runs -> {out} (dry run: nothing is run or written)")
    for r in runs:
        status = (table.status(r.run_id) if table else None) or "todo"
        if status == OK:
            status = "done"
        print(f"{r.run_id}  {status:<6}  {shlex.join(render_command(spec, r, out / 'runs' / r.run_id))}")


def _summary(spec: SweepSpec, runs: list[PlannedRun], table: ResultsTable) -> None:
    rows = [table.rows[r.run_id] for r in runs if r.run_id in table.rows]
    metric = (spec.metric or {}).get("name")
    ok = sum(1 for r in rows if r["status"] == OK)
    print(f"{ok}/{len(runs)} runs finished ok; table: {table.path}")
    if metric:
        best = best_row(rows, metric, spec.metric.get("goal", "minimize"))
        if best is None:
            print(f"no finished run reported metric {metric!r}")
        else:
            params = " ".join(f"{k}={best.get(k, '')}" for k in spec.param_names)
            print(f"best {metric} = {best[metric]} ({spec.metric.get('goal', 'minimize')}): run {best['run_id']}  {params}")


def run_cli(argv: list[str] | None = None) -> int:
    """`seqmix sweep` without exiting: returns the exit status (0 all runs ok, 1 some failed, 2 bad input, 130 stopped)."""
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.file)
        check_command(spec)
        runs = plan_runs(spec, args.max_runs, args.seed)
        check_seqmix_arguments(spec, runs)  # a `seqmix fit` sweep: unknown parameters fail here, not in every run
        out = args.out if args.out is not None else DEFAULT_OUT_ROOT / spec.name
        opts = RunnerOptions(out=out, workers=args.workers, retries=args.retries, timeout_s=args.timeout, wandb=args.wandb)
    except SweepSpecError as e:
        print(f"seqmix sweep: error: {e}", file=sys.stderr)
        return 2
    for w in _warnings(spec):
        print(f"seqmix sweep: note: {w}", file=sys.stderr)
    if args.dry_run:
        try:
            _dry_run(spec, runs, opts.out)
        except BrokenPipeError:  # e.g. `seqmix sweep FILE --dry-run | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    runner = SweepRunner(spec, runs, opts)
    try:
        runner.prepare_out()
    except SweepRunError as e:
        print(f"seqmix sweep: error: {e}", file=sys.stderr)
        return 2
    previous = install_signal_handlers()
    try:
        counts = runner.run()
    except KeyboardInterrupt:
        print("seqmix sweep: stopped; runs that did not finish have no row and will rerun next time", file=sys.stderr)
        return 130
    finally:
        runner.release()
        restore_signal_handlers(previous)
    assert runner.table is not None
    _summary(spec, runs, runner.table)
    return 0 if counts["failed"] == 0 and counts["interrupted"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of `seqmix sweep`: run_cli's exit status."""
    return run_cli(argv)
