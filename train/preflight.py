"""Checks that run before any training: config files that parse, one-line option errors, output folders that can be
written. Each problem becomes one line that names the bad value and what would be valid."""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningArgumentParser

from .errors import SeqmixError

CONFIG_FLAGS = ("-c", "--config")
# Lines of jsonargparse's multi-line messages that repeat what the other lines say.
_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:",
          "Given value:", "Expected a <class 'NoneType'>")


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
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
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


def init_options(class_path: str) -> list[str] | None:
    """The keyword options of a class given by import path (what its init_args may hold), or None if not importable."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = inspect.signature(cls.__init__).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    skip = {"self", "args", "kwargs", "d_model"} if "archs" in module else {"self", "args", "kwargs"}
    return [p for p in params if p not in skip]


def one_line(message: str, known_options: Iterable[str] = (), command: str = "seqmix <command>") -> str:
    """jsonargparse's (often multi-line) error as one line, with the valid options or a close match where known."""
    lines = [line.strip().removeprefix("- ").strip() for line in str(message).splitlines()]
    lines = [line for line in lines if line and not line.startswith(_NOISE)]
    specific = [line for line in lines if not line.startswith("Expected a <class")]
    if len(specific) > 1:  # an alternative's own error says more than "expected a str" from another alternative
        lines = specific
    text = re.sub(r"\s+", " ", " ".join(lines)).replace(": :", ":").strip()
    unknown = re.search(r"Option '([^']+)' is not accepted", text)
    class_path = re.search(r"class_path[=\s]'([\w.]+)'", str(message))
    if unknown and class_path:
        options = init_options(class_path.group(1))
        if options:
            text += f"; {class_path.group(1).rsplit('.', 1)[-1]} takes: {', '.join(options)}"
    unrecognized = re.match(r"unrecognized arguments: (.*)", text)
    not_accepted = re.search(r"does not accept option '([^']+)'", text)
    if unrecognized or not_accepted:
        known = sorted({o for o in known_options if o.startswith("--")})
        if unrecognized:
            bad = [a.split("=", 1)[0] for a in unrecognized.group(1).split() if a.startswith("--")]
        else:
            bad = [f"--{not_accepted.group(1)}"]
        hints = [m[0] for b in bad if (m := difflib.get_close_matches(b, known, n=1, cutoff=0.75))]
        if hints:
            text += f" (did you mean {', '.join(hints)}?)"
        else:
            text += f" ({command} --help lists every option)"
    return text


class OneLineErrorParser(LightningArgumentParser):
    """LightningArgumentParser whose parse errors raise SeqmixError with one line instead of printing usage and exiting;
    config files are checked first so that malformed YAML names the file, line and column."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **{**kwargs, "exit_on_error": False})

    def parse_args(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        """Parse like jsonargparse; any problem raises train.cli.SeqmixError."""

        argv = list(args) if isinstance(args, (list, tuple)) else []
        command = self.prog.replace(" [options]", "")  # "seqmix", or "seqmix fit" in a subcommand's parser
        if command == "seqmix" and argv and argv[0] in getattr(getattr(self, "_subcommands_action", None), "choices", {}):
            command = f"seqmix {argv[0]}"
        for path in config_files(argv):
            problem = config_file_problem(path)
            if problem:
                raise SeqmixError(f"{command}: error: {problem}")
        try:
            cfg = super().parse_args(args, *rest, **kwargs)
        except ArgumentError as err:
            parser = getattr(err, "subcommand_parser", None) or self._subparser(argv)
            known = [o for action in parser._actions for o in action.option_strings]
            raise SeqmixError(f"{command}: error: {one_line(str(err), known, command)}") from None
        if " [options]" not in self.prog:  # the top parser (a subcommand's parser parses the same files too)
            subcommand = cfg.get("subcommand") if hasattr(cfg, "get") else None
            for note in dropped_init_args(config_files(argv), cfg.get(subcommand) if subcommand else cfg):
                print(f"seqmix: note: {note}", file=sys.stderr)
        return cfg

    def _subparser(self, argv: list[str]) -> LightningArgumentParser:
        action = getattr(self, "_subcommands_action", None)
        choices = getattr(action, "choices", None) or {}
        return choices.get(argv[0], self) if argv else self


def unwritable(path: str | os.PathLike) -> str | None:
    """Why files cannot be written in folder `path` (created later if missing), or None: probes with a real temporary
    file in the nearest existing folder (a permission bit alone misleads root and read-only mounts)."""
    probe = Path(path).expanduser().absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{str(probe)!r} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        return f"{str(probe)!r} is not writable ({err.strerror or err})"
    return None
