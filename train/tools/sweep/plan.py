"""Which runs a sweep makes: grid/random run lists, stable run ids, and the command line W&B's agent would build."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import SweepSpec, SweepSpecError

ROOT_DIR_FLAG = "--trainer.default_root_dir"
ENVVAR_MACRO = re.compile(r"\$\{envvar:([A-Za-z0-9_]*)\}")
ARG_MACROS = (
    "args", "args_no_equals", "args_no_hyphens", "args_no_boolean_flags", "args_json", "args_json_file",
    "args_append_hydra", "args_override_hydra",
)
MACROS = ("env", "interpreter", "program") + ARG_MACROS
# Random search redraws a duplicate configuration at most this many times before deciding the space is exhausted.
MAX_REDRAWS = 1000


def run_id(args: dict[str, Any]) -> str:
    """Stable 12-hex id of a run, from its parameters only (key order does not matter)."""
    blob = json.dumps(args, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _nest(flat: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """Leaf paths -> the nested mapping W&B hands to a run (`a.b` nested under `a` when declared nested)."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        d = out
        for key in path[:-1]:
            d = d.setdefault(key, {})
        d[path[-1]] = value
    return out


@dataclass(frozen=True)
class PlannedRun:
    """One run of the sweep: its id and its top-level arguments (nested parameters become mappings)."""

    run_id: str
    args: dict[str, Any]
    flat: dict[str, Any]

    @classmethod
    def from_leaves(cls, leaves: dict[tuple[str, ...], Any]) -> PlannedRun:
        """Build a run from leaf path -> value."""
        args = _nest(leaves)
        return cls(run_id(args), args, {".".join(k): v for k, v in leaves.items()})


def _dedup(runs: list[PlannedRun]) -> list[PlannedRun]:
    seen: set[str] = set()
    return [r for r in runs if not (r.run_id in seen or seen.add(r.run_id))]


def grid_runs(spec: SweepSpec) -> list[PlannedRun]:
    """Full product of every parameter's values; parameters sorted by name, the last one varying fastest."""
    axes = [p.grid_values() for p in spec.params]
    paths = [p.path for p in spec.params]
    return _dedup([PlannedRun.from_leaves(dict(zip(paths, combo, strict=True))) for combo in itertools.product(*axes)])


def space_size(spec: SweepSpec) -> float:
    """Distinct configurations in the search space (inf when some parameter is continuous)."""
    sizes = [p.grid_size() if p.distribution != "categorical_w_probabilities" else len(p.config["values"])
             for p in spec.params]
    return math.inf if any(s is None for s in sizes) else math.prod(sizes)


def random_runs(spec: SweepSpec, count: int, seed: int) -> list[PlannedRun]:
    """`count` distinct seeded draws; a larger count extends (never changes) a smaller count's list."""
    rng = random.Random(seed)
    out: list[PlannedRun] = []
    seen: set[str] = set()
    redraws = 0
    while len(out) < count and redraws < MAX_REDRAWS:
        run = PlannedRun.from_leaves({p.path: p.sample(rng) for p in spec.params})
        if run.run_id in seen:
            redraws += 1
            continue
        seen.add(run.run_id)
        out.append(run)
        redraws = 0
    return out


def plan_runs(spec: SweepSpec, max_runs: int | None = None, seed: int = 0) -> list[PlannedRun]:
    """The sweep's run list: `max_runs` (else the file's `run_cap`) caps it; random search needs one of them."""
    if max_runs is not None and max_runs < 1:
        raise SweepSpecError(f"--max-runs must be a positive integer, got {max_runs}")
    limit = max_runs if max_runs is not None else spec.run_cap
    if spec.method == "grid":
        runs = grid_runs(spec)
        return runs[:limit] if limit is not None else runs
    if limit is None:
        raise SweepSpecError("method 'random' never ends by itself: pass --max-runs N or set `run_cap` in the sweep file")
    return random_runs(spec, min(limit, space_size(spec)), seed)


def arg_forms(args: dict[str, Any]) -> dict[str, list[str]]:
    """The argument macros W&B's agent fills in, rendered exactly as it renders them (Python str() of each value)."""
    forms: dict[str, list[str]] = {m: [] for m in ARG_MACROS if m != "args_json_file"}
    for key, value in args.items():
        flag = f"{key}={value}"
        forms["args"].append("--" + flag)
        forms["args_no_hyphens"].append(flag)
        forms["args_no_equals"] += ["--" + key, str(value)]
        forms["args_append_hydra"].append("+" + flag)
        forms["args_override_hydra"].append("++" + flag)
        if not isinstance(value, bool):
            forms["args_no_boolean_flags"].append("--" + flag)
        elif value:
            forms["args_no_boolean_flags"].append("--" + key)
    forms["args_json"] = [json.dumps(args)]
    return forms


def check_command(spec: SweepSpec) -> None:
    """Reject unknown `${...}` macros and unset `${envvar:NAME}` before anything runs."""
    for chunk in spec.command:
        if chunk.startswith("${") and chunk.endswith("}") and not ENVVAR_MACRO.fullmatch(chunk) and chunk[2:-1] not in MACROS:
            raise SweepSpecError(f"command: unknown macro {chunk!r}; valid: {', '.join('${' + m + '}' for m in MACROS)}, "
                                 "${envvar:NAME}")
        for m in ENVVAR_MACRO.finditer(chunk):
            if m.group(1) not in os.environ:
                raise SweepSpecError(f"command: {chunk!r} needs environment variable {m.group(1)!r}, which is not set")


def render_command(spec: SweepSpec, run: PlannedRun, run_dir: Path | None = None,
                   interpreter: str = sys.executable) -> list[str]:
    """The subprocess argv of a run: the sweep's command with macros filled in, then `--trainer.default_root_dir=RUN_DIR`.

    `${interpreter}` is this Python (W&B's agent writes `python`) so a local sweep uses the same environment.
    """
    check_command(spec)
    forms = arg_forms(run.args)
    env_bin = shutil.which("env") or "/usr/bin/env"
    fill = {"env": [env_bin], "interpreter": [interpreter], "program": [spec.program or ""], **forms,
            "args_json_file": [str((run_dir or Path(".")) / "sweep_args.json")]}
    argv: list[str] = []
    for chunk in spec.command:
        if chunk.startswith("${") and chunk.endswith("}") and chunk[2:-1] in fill:
            argv += fill[chunk[2:-1]]
        else:
            argv.append(ENVVAR_MACRO.sub(lambda m: os.environ[m.group(1)], chunk))
    if run_dir is not None:
        argv.append(f"{ROOT_DIR_FLAG}={run_dir}")
    return argv


TRAINER_COMMANDS = ("fit", "validate", "test", "predict")


def seqmix_arguments(argv: list[str]) -> list[str] | None:
    """What a rendered command passes to `seqmix fit|validate|test|predict` (``seqmix fit ...``, ``python -m seqmix.train.cli
    fit ...``, ``python train/cli.py fit ...``), from the subcommand on; None when it runs any other program."""
    for i, arg in enumerate(argv):
        if Path(arg).name == "seqmix" or arg.replace("\\", "/").endswith("train/cli.py") or (
            arg == "seqmix.train.cli" and i > 0 and argv[i - 1] == "-m"
        ):
            rest = argv[i + 1 :]
            return rest if rest and rest[0] in TRAINER_COMMANDS else None
    return None


def check_seqmix_arguments(spec: SweepSpec, runs: list[PlannedRun], max_checks: int = 16) -> None:
    """When the sweep runs `seqmix fit`, parse runs' arguments with seqmix's own parser (nothing is built or run): an
    unknown parameter name or a value of the wrong type is a SweepSpecError before any run starts. Checks the first
    run, then a run for each further value of a categorical parameter (at most `max_checks` runs, ~0.5 s each)."""
    if not runs or seqmix_arguments(render_command(spec, runs[0])) is None:
        return
    import contextlib
    import io

    from ...cli import cli  # LightningCLI: imported only when a sweep runs seqmix
    from ...errors import SeqmixError

    categorical = {p.name for p in spec.params if p.distribution in ("categorical", "categorical_w_probabilities")}
    seen: set[tuple[str, str]] = set()
    checked = 0
    for run in runs:
        new = {(k, repr(v)) for k, v in run.args.items() if k in categorical} - seen
        if checked and not new:
            continue
        if checked >= max_checks:
            break
        seen |= new
        checked += 1
        args = seqmix_arguments(render_command(spec, run)) or []
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                cli([*args, "--print_config"])  # parses, prints the config and exits
        except SeqmixError as err:
            why = re.sub(r"^seqmix \w+: error: ", "", str(err))
            raise SweepSpecError(f"run {run.run_id} ({', '.join(f'{k}={v}' for k, v in run.args.items())}): "
                                 f"seqmix {args[0]} refuses its arguments: {why}") from None
        except SystemExit as exit_:
            if exit_.code not in (0, None):
                raise SweepSpecError(f"run {run.run_id}: seqmix {args[0]} refuses its arguments (exit {exit_.code})") from None
