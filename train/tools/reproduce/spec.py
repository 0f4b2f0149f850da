"""What a reproduction runs: reproduce.yaml parsed and checked, presets applied, placeholders listed."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

KINDS = ("fit", "sweep", "evaluate")
SPEC_FILE = "reproduce.yaml"
PLACEHOLDER = re.compile(r"\{(out|root|step|ckpt):?([A-Za-z0-9_]*)\}")
"""{out}: the run folder; {root}: the reproduction's folder; {step:ID}: a step's folder; {ckpt:ID}: a fit step's
newest last.ckpt (resolved when the step that names it starts)."""
STEP_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class SpecError(ValueError):
    """A reproduce.yaml that cannot be run."""


@dataclass(frozen=True)
class Step:
    """One command of a reproduction: `seqmix KIND ARGS`, run in the folder OUT/steps/ID."""

    id: str
    kind: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    """One number of the paper, where ours comes from, and when the two agree."""

    what: str
    source: str
    paper: float | str
    file: str  # a results file, relative to the run folder (e.g. steps/curve/extrapolation.csv)
    column: str
    where: dict[str, str] = field(default_factory=dict)  # the row(s): column -> value (compared as text)
    reduce: str = "max"  # over the matching rows: max, min or mean
    tolerance: float | None = None  # agree when |ours - paper| <= tolerance
    at_least: float | None = None  # agree when ours >= at_least
    at_most: float | None = None  # agree when ours <= at_most

    def rule(self) -> str:
        """The agreement rule, in words."""
        if self.tolerance is not None:
            return f"abs(ours - paper) <= {self.tolerance:g}"
        return f"ours >= {self.at_least:g}" if self.at_least is not None else f"ours <= {self.at_most:g}"

    def agrees(self, ours: float) -> bool:
        """Whether our number agrees with the paper's by this claim's rule."""
        if self.tolerance is not None:
            return abs(ours - float(self.paper)) <= self.tolerance
        return ours >= self.at_least if self.at_least is not None else ours <= self.at_most  # type: ignore[operator]


@dataclass(frozen=True)
class Results:
    """A file each run writes (relative to a step's folder) whose rows go into OUT/results.csv."""

    step: str
    file: str


@dataclass(frozen=True)
class Plot:
    """A figure of results rows: y against x, a line per `line`, a panel per `panel`, the best y over `best_over`."""

    file: str  # the figure's name in the run folder
    table: str  # the CSV it reads, relative to the run folder
    x: str
    y: str
    line: str
    panel: str | None = None
    best_over: str | None = None
    where: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reproduction:
    """A reproduction's definition, with one preset applied."""

    name: str
    claim: str
    source: str
    folder: Path
    preset: str
    presets: tuple[str, ...]
    steps: tuple[Step, ...]
    results: tuple[Results, ...]
    claims: tuple[Claim, ...]
    plots: tuple[Plot, ...]
    raw: dict[str, Any]


def _strings(where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        raise SpecError(f"{where} must be a list of command-line arguments (strings or numbers), got {value!r}")
    return [str(v) for v in value]


def _mapping(where: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a mapping, got {value!r}")
    unknown = set(value) - allowed
    if unknown:
        raise SpecError(f"{where} has unknown keys {sorted(unknown)}; valid: {', '.join(sorted(allowed))}")
    return value


def _steps(path: Path, raw: Any) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"{path}: steps must be a non-empty list of {{id, fit|sweep|evaluate: [args]}}")
    steps: list[Step] = []
    for i, entry in enumerate(raw):
        where = f"{path}: steps[{i}]"
        entry = _mapping(where, entry, {"id", *KINDS})
        kinds = [k for k in KINDS if k in entry]
        if len(kinds) != 1:
            raise SpecError(f"{where} must have exactly one of {', '.join(KINDS)}, got {sorted(entry)}")
        step_id = entry.get("id")
        if not isinstance(step_id, str) or not STEP_ID.match(step_id):
            raise SpecError(f"{where}: id must be lower_snake_case (a folder name), got {step_id!r}")
        if step_id in {s.id for s in steps}:
            raise SpecError(f"{where}: id {step_id!r} is used twice")
        steps.append(Step(step_id, kinds[0], tuple(_strings(f"{where}.{kinds[0]}", entry[kinds[0]]))))
    return steps


def _apply_preset(path: Path, steps: list[Step], name: str, raw: Any) -> list[Step]:
    """Drop the preset's `skip` steps, append its per-kind arguments, then its per-step ones (`append`), or swap a step's
    (`replace`)."""
    preset = _mapping(f"{path}: presets.{name}", raw, {*KINDS, "steps", "skip"})
    per_step = _mapping(f"{path}: presets.{name}.steps", preset.get("steps"), {s.id for s in steps})
    skip = set(_strings(f"{path}: presets.{name}.skip", preset.get("skip", [])))
    if skip - {s.id for s in steps}:
        raise SpecError(f"{path}: presets.{name}.skip names unknown steps {sorted(skip - {s.id for s in steps})}")
    out = []
    for step in steps:
        if step.id in skip:
            continue
        change = _mapping(f"{path}: presets.{name}.steps.{step.id}", per_step.get(step.id), {"append", "replace"})
        args = list(step.args)
        if "replace" in change:
            args = _strings(f"{path}: presets.{name}.steps.{step.id}.replace", change["replace"])
        args += _strings(f"{path}: presets.{name}.{step.kind}", preset.get(step.kind, []))
        args += _strings(f"{path}: presets.{name}.steps.{step.id}.append", change.get("append", []))
        out.append(Step(step.id, step.kind, tuple(args)))
    return out


def _check_placeholders(path: Path, steps: list[Step]) -> None:
    """Every {step:ID} / {ckpt:ID} names an earlier step ({ckpt:} a fit step); nothing else looks like a placeholder."""
    seen: dict[str, str] = {}
    for step in steps:
        for arg in step.args:
            for m in PLACEHOLDER.finditer(arg):
                kind, ref = m.groups()
                if kind in ("out", "root"):
                    if ref:
                        raise SpecError(f"{path}: step {step.id}: {{{kind}}} takes no name, got {m.group(0)!r}")
                    continue
                if ref not in seen:
                    raise SpecError(f"{path}: step {step.id}: {m.group(0)} must name an earlier step; earlier: "
                                    f"{', '.join(seen) or 'none'}")
                if kind == "ckpt" and seen[ref] != "fit":
                    raise SpecError(f"{path}: step {step.id}: {m.group(0)} names a {seen[ref]} step; checkpoints come "
                                    "from fit steps")
        seen[step.id] = step.kind


def _claims(path: Path, raw: Any) -> list[Claim]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(f"{path}: claims must be a list")
    keys = {"what", "source", "paper", "file", "column", "where", "reduce", "tolerance", "at_least", "at_most"}
    claims = []
    for i, entry in enumerate(raw):
        where = f"{path}: claims[{i}]"
        entry = _mapping(where, entry, keys)
        missing = {"what", "source", "paper", "file", "column"} - set(entry)
        if missing:
            raise SpecError(f"{where} lacks {sorted(missing)}")
        rules = [k for k in ("tolerance", "at_least", "at_most") if entry.get(k) is not None]
        if len(rules) != 1:
            raise SpecError(f"{where} needs exactly one agreement rule of tolerance, at_least, at_most; got {rules}")
        if "tolerance" in rules and isinstance(entry["paper"], str):
            raise SpecError(f"{where}: a tolerance needs a numeric paper value, got {entry['paper']!r}")
        if entry.get("reduce", "max") not in ("max", "min", "mean"):
            raise SpecError(f"{where}: reduce must be max, min or mean, got {entry['reduce']!r}")
        rows = entry.get("where") or {}
        if not isinstance(rows, dict):
            raise SpecError(f"{where}.where must map columns to values, got {rows!r}")
        matches = {str(k): str(v) for k, v in rows.items()}
        claims.append(Claim(**{**entry, "where": matches}))
    return claims


def _plots(path: Path, raw: Any) -> list[Plot]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SpecError(f"{path}: plots must be a list")
    plots = []
    for i, entry in enumerate(raw):
        entry = _mapping(f"{path}: plots[{i}]", entry, {"file", "table", "x", "y", "line", "panel", "best_over", "where"})
        missing = {"file", "table", "x", "y", "line"} - set(entry)
        if missing:
            raise SpecError(f"{path}: plots[{i}] lacks {sorted(missing)}")
        if not str(entry["file"]).endswith(".png"):
            raise SpecError(f"{path}: plots[{i}].file must be a .png name, got {entry['file']!r}")
        plots.append(Plot(**{**entry, "where": {str(k): str(v) for k, v in (entry.get("where") or {}).items()}}))
    return plots


def load(folder: Path, preset: str) -> Reproduction:
    """The reproduction in `folder` (its reproduce.yaml) with `preset` applied; a SpecError names what is wrong."""
    path = folder / SPEC_FILE
    if not path.is_file():
        raise SpecError(f"{folder} has no {SPEC_FILE}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    raw = _mapping(str(path), raw, {"name", "claim", "source", "steps", "presets", "results", "claims", "plots"})
    for key in ("name", "claim", "source"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise SpecError(f"{path}: {key} must be a non-empty string")
    if raw["name"] != folder.name:
        raise SpecError(f"{path}: name {raw['name']!r} must be the folder's name {folder.name!r}")
    presets = raw.get("presets") or {}
    if not isinstance(presets, dict) or not {"tiny", "full"} <= set(presets):
        raise SpecError(f"{path}: presets must define at least tiny and full (full: {{}} for the steps as written)")
    if preset not in presets:
        raise SpecError(f"unknown preset {preset!r} for {raw['name']}; choose one of {', '.join(presets)}")
    written = _steps(path, raw.get("steps"))
    steps = _apply_preset(path, written, preset, presets[preset])
    _check_placeholders(path, steps)
    results = []
    for i, entry in enumerate(raw.get("results") or []):
        entry = _mapping(f"{path}: results[{i}]", entry, {"step", "file"})
        if entry.get("step") not in {s.id for s in written} or not isinstance(entry.get("file"), str):
            raise SpecError(f"{path}: results[{i}] must name a step and a file, got {entry!r}")
        if entry["step"] in {s.id for s in steps}:  # a step the preset skips has no results
            results.append(Results(entry["step"], entry["file"]))
    return Reproduction(raw["name"], " ".join(raw["claim"].split()), " ".join(raw["source"].split()), folder, preset,
                        tuple(presets), tuple(steps), tuple(results), tuple(_claims(path, raw.get("claims"))),
                        tuple(_plots(path, raw.get("plots"))), raw)


def append_args(repro: Reproduction, kind: str, args: str) -> Reproduction:
    """The reproduction with `args` (one shell-quoted string) appended to every step of `kind` (fit, sweep, evaluate)."""
    if kind not in KINDS:
        raise SpecError(f"--append: unknown step kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not any(s.kind == kind for s in repro.steps):
        raise SpecError(f"--append {kind}: {repro.name} (preset {repro.preset}) has no {kind} step")
    extra = tuple(shlex.split(args))
    steps = tuple(replace(s, args=s.args + extra) if s.kind == kind else s for s in repro.steps)
    return replace(repro, steps=steps)


def available(root: Path) -> list[Path]:
    """The reproduction folders under root (those holding a reproduce.yaml), by name."""
    return sorted(p.parent for p in root.glob(f"*/{SPEC_FILE}"))
