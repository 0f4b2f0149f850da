"""Sweep files in W&B's own format: load, validate, and describe every parameter's search space."""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SweepSpecError(ValueError):
    """A sweep file that cannot be run: the message names the bad value and what would be valid."""


# Top-level keys W&B accepts in a sweep configuration (its JSON schema plus `run_cap`).
TOP_LEVEL_KEYS = (
    "program", "method", "parameters", "command", "name", "description", "metric", "early_terminate",
    "run_cap", "entity", "project", "controller", "apiVersion", "kind", "job", "image_uri",
)
LOCAL_METHODS = ("grid", "random")
SERVER_METHODS = ("bayes", "custom")
METRIC_KEYS = ("name", "goal", "target", "impute")

# distribution -> (required keys, optional keys); `distribution` itself is always allowed.
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "constant": (("value",), ()),
    "categorical": (("values",), ()),
    "categorical_w_probabilities": (("values", "probabilities"), ()),
    "int_uniform": (("min", "max"), ()),
    "uniform": (("min", "max"), ()),
    "q_uniform": (("min", "max"), ("q",)),
    "log_uniform": (("min", "max"), ()),
    "log_uniform_values": (("min", "max"), ()),
    "inv_log_uniform": (("min", "max"), ()),
    "inv_log_uniform_values": (("min", "max"), ()),
    "q_log_uniform": (("min", "max"), ("q",)),
    "q_log_uniform_values": (("min", "max"), ("q",)),
    "normal": ((), ("mu", "sigma")),
    "q_normal": ((), ("mu", "sigma", "q")),
    "log_normal": ((), ("mu", "sigma")),
    "q_log_normal": ((), ("mu", "sigma", "q")),
    "beta": ((), ("a", "b")),
    "q_beta": ((), ("a", "b", "q")),
}
DEFAULTS = {"mu": 0.0, "sigma": 1.0, "a": 1.0, "b": 1.0, "q": 1.0}
# Distributions a grid can enumerate (as W&B's grid search does); the rest only make sense for random search.
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _quantize(x: float, q: float | int) -> float | int:
    # W&B returns ints when q is an int, floats otherwise.
    v = round(x / q) * q
    return int(v) if _is_int(q) else float(v)


@dataclass(frozen=True)
class Param:
    """One swept leaf: its dotted path, distribution name and validated settings."""

    path: tuple[str, ...]
    distribution: str
    config: dict[str, Any] = field(hash=False)

    @property
    def name(self) -> str:
        """Dotted name, as it appears in the results table."""
        return ".".join(self.path)

    def sample(self, rng: random.Random) -> Any:
        """Draw one value with W&B's meaning of this distribution."""
        c, d = self.config, self.distribution
        if d == "constant":
            return c["value"]
        if d == "categorical":
            return c["values"][rng.randrange(len(c["values"]))]
        if d == "categorical_w_probabilities":
            return rng.choices(c["values"], weights=c["probabilities"])[0]
        if d == "int_uniform":
            return rng.randint(c["min"], c["max"])
        if d in ("uniform", "q_uniform"):
            x = rng.uniform(c["min"], c["max"])
        elif d in ("log_uniform", "q_log_uniform"):  # min/max are natural-log exponents
            x = math.exp(rng.uniform(c["min"], c["max"]))
        elif d in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"):
            x = math.exp(rng.uniform(math.log(c["min"]), math.log(c["max"])))
        elif d == "inv_log_uniform":
            x = math.exp(-rng.uniform(c["min"], c["max"]))
        elif d in ("normal", "q_normal"):
            x = rng.gauss(c["mu"], c["sigma"])
        elif d in ("log_normal", "q_log_normal"):
            x = rng.lognormvariate(c["mu"], c["sigma"])
        elif d in ("beta", "q_beta"):
            x = rng.betavariate(c["a"], c["b"])
        else:  # pragma: no cover - validate() admits only the distributions above
            raise AssertionError(d)
        return _quantize(x, c["q"]) if d.startswith("q_") else x

    def grid_values(self) -> list[Any]:
        """Every value a grid visits, in order (W&B's: int_uniform is min..max, q_uniform is min, min+q, … < max)."""
        c, d = self.config, self.distribution
        if d == "constant":
            return [c["value"]]
        if d == "categorical":
            return list(c["values"])
        if d == "int_uniform":
            return list(range(c["min"], c["max"] + 1))
        if d == "q_uniform":
            n = math.ceil((c["max"] - c["min"]) / c["q"])
            return [_quantize(c["min"] + i * c["q"], c["q"]) for i in range(max(n, 0))]
        raise SweepSpecError(
            f"parameter {self.name!r}: distribution {d!r} cannot be enumerated by method 'grid'; "
            f"grid accepts {', '.join(GRID_DISTRIBUTIONS)} (values/value/int min-max/q_uniform), or use method 'random'"
        )

    def grid_size(self) -> int | None:
        """How many values a grid visits, or None when the distribution is continuous."""
        return len(self.grid_values()) if self.distribution in GRID_DISTRIBUTIONS else None


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file."""

    name: str
    method: str
    params: tuple[Param, ...]
    command: tuple[str, ...]
    program: str | None = None
    metric: dict[str, Any] | None = None
    run_cap: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    path: Path | None = None

    @property
    def param_names(self) -> list[str]:
        """Leaf parameter names in the order runs render them (sorted, as W&B does)."""
        return [p.name for p in self.params]


def _check_json(where: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise SweepSpecError(
            f"{where}: value {value!r} is not plain data (strings, numbers, booleans, null, lists, mappings): {e}"
        ) from None


def _infer_distribution(where: str, cfg: dict[str, Any]) -> str:
    if "distribution" in cfg:
        d = cfg["distribution"]
        if d not in DISTRIBUTIONS:
            raise SweepSpecError(f"{where}: unknown distribution {d!r}; valid: {', '.join(DISTRIBUTIONS)}")
        return d
    if "value" in cfg:
        return "constant"
    if "values" in cfg:
        return "categorical_w_probabilities" if "probabilities" in cfg else "categorical"
    if "min" in cfg and "max" in cfg:
        return "int_uniform" if _is_int(cfg["min"]) and _is_int(cfg["max"]) else "uniform"
    raise SweepSpecError(
        f"{where}: cannot tell how to search it from keys {sorted(cfg)}; give `values: [...]`, `value: x`, "
        f"`min`/`max`, `distribution: <one of {', '.join(DISTRIBUTIONS)}>`, or nested `parameters:`"
    )


def _validate_param(where: str, d: str, cfg: dict[str, Any]) -> dict[str, Any]:
    required, optional = DISTRIBUTIONS[d]
    unknown = sorted(set(cfg) - set(required) - set(optional) - {"distribution"})
    if unknown:
        raise SweepSpecError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for distribution {d!r}; "
            f"valid keys: {', '.join(('distribution',) + required + optional)}"
        )
    missing = [k for k in required if k not in cfg]
    if missing:
        raise SweepSpecError(f"{where}: distribution {d!r} needs key(s) {', '.join(map(repr, missing))}")
    c = {k: cfg.get(k, DEFAULTS.get(k)) for k in required + optional}
    for k in ("min", "max", "mu", "sigma", "a", "b", "q"):
        if k in c and not _is_number(c[k]):
            raise SweepSpecError(f"{where}: {k} must be a number, got {c[k]!r}")
    if "value" in c:
        _check_json(where, c["value"])
    if "values" in c:
        if not isinstance(c["values"], list) or not c["values"]:
            raise SweepSpecError(f"{where}: values must be a non-empty list, got {c['values']!r}")
        _check_json(where, c["values"])
    if "probabilities" in c:
        p = c["probabilities"]
        if (not isinstance(p, list) or len(p) != len(c["values"]) or not all(_is_number(x) and x >= 0 for x in p)
                or not math.isclose(sum(p), 1.0, abs_tol=1e-6)):
            raise SweepSpecError(
                f"{where}: probabilities must be {len(c['values'])} non-negative numbers (one per value) "
                f"summing to 1, got {p!r}"
            )
    if d == "int_uniform" and not (_is_int(c["min"]) and _is_int(c["max"])):
        raise SweepSpecError(f"{where}: int_uniform needs integer min and max, got {c['min']!r}, {c['max']!r}")
    if "min" in c and c["min"] > c["max"]:
        raise SweepSpecError(f"{where}: min {c['min']!r} is greater than max {c['max']!r}")
    if d.endswith("_values") and c["min"] <= 0:
        raise SweepSpecError(f"{where}: {d} needs min > 0 (it samples log(value)), got min={c['min']!r}")
    if "q" in c and c["q"] <= 0:
        raise SweepSpecError(f"{where}: q must be > 0, got {c['q']!r}")
    if "sigma" in c and c["sigma"] < 0:
        raise SweepSpecError(f"{where}: sigma must be >= 0, got {c['sigma']!r}")
    if d in ("beta", "q_beta") and (c["a"] <= 0 or c["b"] <= 0):
        raise SweepSpecError(f"{where}: beta needs a > 0 and b > 0, got a={c['a']!r}, b={c['b']!r}")
    return c


def _parse_params(block: Any, prefix: tuple[str, ...], where: str) -> list[Param]:
    if not isinstance(block, dict) or not block:
        raise SweepSpecError(f"{where}: must be a non-empty mapping of parameter name -> search space, got {block!r}")
    out: list[Param] = []
    for name in sorted(block, key=str):
        cfg = block[name]
        here = f"parameter {'.'.join(prefix + (str(name),))!r}"
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            raise SweepSpecError(f"{here}: names must match {PARAM_NAME.pattern}")
        if not isinstance(cfg, dict):
            raise SweepSpecError(f"{here}: must be a mapping such as {{values: [...]}} or {{value: x}}, got {cfg!r}")
        if "parameters" in cfg:
            extra = sorted(set(cfg) - {"parameters"})
            if extra:
                raise SweepSpecError(f"{here}: a nested `parameters:` block allows no other keys, found {extra}")
            out += _parse_params(cfg["parameters"], prefix + (name,), f"{here} -> parameters")
            continue
        d = _infer_distribution(here, cfg)
        out.append(Param(prefix + (name,), d, _validate_param(here, d, cfg)))
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a sweep file into a mapping; malformed YAML is reported with its line and column."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SweepSpecError(f"cannot read sweep file {str(p)!r}: {e.strerror or e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SweepSpecError(f"sweep file {str(p)!r} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(raw, dict):
        raise SweepSpecError(f"sweep file {str(p)!r} must hold a mapping of sweep keys, got {type(raw).__name__}")
    return raw


def parse_spec(raw: dict[str, Any], path: Path | None = None) -> SweepSpec:
    """Validate a sweep configuration mapping for the local runner."""
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS), key=str)
    if unknown:
        raise SweepSpecError(f"unknown top-level key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(TOP_LEVEL_KEYS)}")
    method = raw.get("method")
    if method in SERVER_METHODS:
        raise SweepSpecError(
            f"method {method!r} needs a W&B server (its search runs in W&B's sweep controller): use `wandb sweep FILE` "
            f"then `wandb agent SWEEP_ID`, or set method to one of {', '.join(LOCAL_METHODS)} to run locally"
        )
    if method not in LOCAL_METHODS:
        raise SweepSpecError(f"method must be one of {', '.join(LOCAL_METHODS + SERVER_METHODS)}, got {method!r}")
    if "parameters" not in raw:
        raise SweepSpecError("missing required key 'parameters'")
    params = _parse_params(raw["parameters"], (), "parameters")
    names = [p.name for p in params]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SweepSpecError(f"parameter name(s) {dup} are defined both nested and dotted; use one spelling")
    if method == "grid":
        for p in params:
            p.grid_values()  # raises with the parameter's name when it is continuous

    command = raw.get("command", list(DEFAULT_COMMAND))
    if not isinstance(command, list) or not command or not all(isinstance(c, (str, int, float)) for c in command):
        raise SweepSpecError(f"command must be a non-empty list of strings, got {command!r}")
    program = raw.get("program")
    if program is not None and not isinstance(program, str):
        raise SweepSpecError(f"program must be a string path, got {program!r}")
    if program is None and "${program}" in command:
        raise SweepSpecError("command uses ${program} but the sweep file sets no `program`")

    metric = raw.get("metric")
    if metric is not None:
        if not isinstance(metric, dict) or "name" not in metric:
            raise SweepSpecError(f"metric must be a mapping with a `name`, got {metric!r}")
        bad = sorted(set(metric) - set(METRIC_KEYS))
        if bad:
            raise SweepSpecError(f"metric: unknown key(s) {bad}; valid: {', '.join(METRIC_KEYS)}")
        if metric.get("goal", "minimize") not in ("minimize", "maximize"):
            raise SweepSpecError(f"metric.goal must be 'minimize' or 'maximize', got {metric['goal']!r}")

    run_cap = raw.get("run_cap")
    if run_cap is not None and (not _is_int(run_cap) or run_cap < 1):
        raise SweepSpecError(f"run_cap must be a positive integer, got {run_cap!r}")
    name = raw.get("name") or (path.stem if path is not None else "sweep")
    if not isinstance(name, str):
        raise SweepSpecError(f"name must be a string, got {name!r}")
    return SweepSpec(
        name=name, method=method, params=tuple(params), command=tuple(str(c) for c in command), program=program,
        metric=metric, run_cap=run_cap, raw=raw, path=path,
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Load and validate a sweep file; every problem is a SweepSpecError naming the file's bad value."""
    p = Path(path)
    try:
        return parse_spec(load_yaml(p), p)
    except SweepSpecError as e:
        msg = str(e)
        raise SweepSpecError(msg if str(p) in msg else f"{p}: {msg}") from None
