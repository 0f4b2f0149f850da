"""Local runner for W&B sweep files: `seqmix sweep FILE` runs grid/random sweeps with no W&B server."""

from .main import main, run_cli
from .plan import PlannedRun, plan_runs, render_command, run_id
from .results import ResultsTable
from .runner import RunnerOptions, SweepRunner
from .spec import SweepSpec, SweepSpecError, load_spec, parse_spec

__all__ = [
    "PlannedRun", "ResultsTable", "RunnerOptions", "SweepRunner", "SweepSpec", "SweepSpecError", "load_spec", "main",
    "parse_spec", "plan_runs", "render_command", "run_cli", "run_id",
]
