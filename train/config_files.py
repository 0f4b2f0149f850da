"""Config files given with -c / --config: found in argv, checked to be a YAML mapping (file, line, column), whether
they name the model's class, and the init_args a later class choice silently dropped."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .dotted import import_object

CONFIG_FLAGS = ("-c", "--config")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def config_files(args: Sequence[str]) -> list[str]:
    """The values of every -c / --config option in `args` (``-c X``, ``--config X``, ``--config=X``)."""
    found = []
    for i, arg in enumerate(args):
        if arg in CONFIG_FLAGS and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--config="):
            found.append(arg.split("=", 1)[1])
    return found


def config_file_problem(path: str) -> str | None:
    """Why the config file at `path` is not a YAML mapping (file, line, column, problem), or None (also when `path` is
    not a file: jsonargparse then reads it as inline YAML or says the file does not exist)."""
    file = Path(path).expanduser()
    if not file.is_file():
        return None
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        return f"config file {path}: not UTF-8 text (byte {err.start}); a config file is YAML"
    except OSError as err:
        return f"config file {path}: cannot be read ({err.strerror or err})"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        def at(mark: Any) -> str:
            return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""

        problem, context = getattr(err, "problem", None), getattr(err, "context", None)
        text = f"{problem}{at(getattr(err, 'problem_mark', None))}" if problem else " ".join(str(err).split())
        if context:
            text += f" ({context}{at(getattr(err, 'context_mark', None))})"
        return f"config file {path}: malformed YAML: {text}"
    if data is not None and not isinstance(data, dict):
        return f"config file {path}: must hold a mapping of options (e.g. `trainer: {{max_steps: 100}}`), got a " \
               f"{type(data).__name__}"
    return None


def _subclass_specs(data: Any, prefix: str = "") -> list[tuple[str, dict]]:
    """Every {class_path, init_args} mapping in parsed YAML, by dotted key."""
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("class_path"), str) and isinstance(data.get("init_args"), dict):
        return [(prefix, data)]
    return [spec for k, v in data.items() for spec in _subclass_specs(v, f"{prefix}.{k}" if prefix else str(k))]


def _class(path: str) -> Any:
    try:
        return import_object(path)
    except (ImportError, AttributeError, ValueError):
        return path


def dropped_init_args(files: Iterable[str], cfg: Any) -> list[str]:
    """init_args that a config file gives a class but that were dropped because a later file or option chose another
    class (jsonargparse discards, silently, the options the new class does not take)."""
    notes = []
    for file in files:
        try:
            data = yaml.safe_load(Path(file).expanduser().read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        for key, spec in _subclass_specs(data):
            final = cfg.get(key) if hasattr(cfg, "get") else None
            class_path = getattr(final, "class_path", None)
            if class_path is None or _class(class_path) is _class(spec["class_path"]):
                continue
            kept = set(vars(final.init_args)) if getattr(final, "init_args", None) is not None else set()
            lost = {k: v for k, v in spec["init_args"].items() if k not in kept}
            if lost:
                given = ", ".join(f"{k}={v!r}" for k, v in lost.items())
                one = len(lost) == 1
                notes.append(f"{key} is {class_path}, not {spec['class_path']} as in {file}, so {given} from there "
                             f"{'is' if one else 'are'} dropped ({class_path.rsplit('.', 1)[-1]} does not take "
                             f"{'it' if one else 'them'})")
    return notes


def _yaml(text_or_path: str) -> Any:
    """A config file's parsed YAML, or the value itself parsed as YAML when it is not a file; None if unreadable."""
    file = Path(text_or_path).expanduser()
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8") if file.is_file() else text_or_path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # the parser reports an unreadable file in one line


def _has_class_path(model: Any) -> bool:
    return isinstance(model, dict) and "class_path" in model


def _dotted_name(value: str) -> bool:
    """Whether a value names a class (`pkg.module.Class`) rather than a config file."""
    return bool(re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", value)) and Path(value).suffix not in CONFIG_SUFFIXES


def model_class_given(args: Sequence[str], sections: Iterable[str] = ()) -> bool:
    """Whether the command names the model's class: `--model CLASS` (a dotted name, or a file or inline mapping
    with a `class_path`), `--model.class_path`, or a `model:` holding a `class_path` in a config file (at its top or
    under one of `sections`, e.g. `fit:`). Then the CLI takes the model as {class_path, init_args}, LMTask or any
    subclass (e.g. train.regression.RegressionTask); else it is LMTask with its options directly under `model`, as
    in every config written before (their files, printed configs and saved config.yaml keep that shape)."""
    for i, arg in enumerate(args):
        if arg.startswith("--model.class_path"):
            return True
        value = args[i + 1] if arg == "--model" and i + 1 < len(args) else arg[8:] if arg.startswith("--model=") else None
        if value is not None and (_has_class_path(_yaml(value)) or _dotted_name(value)):
            return True
    for path in config_files(args):
        data = _yaml(path)
        parts = [data, *(data.get(name) for name in sections)] if isinstance(data, dict) else []
        if any(isinstance(part, dict) and _has_class_path(part.get("model")) for part in parts):
            return True
    return False
