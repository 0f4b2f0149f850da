"""Config files given with -c / --config: found in argv, checked to be a YAML mapping (file, line, column), and the
init_args a later class choice silently dropped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .dotted import import_object

CONFIG_FLAGS = ("-c", "--config")


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
