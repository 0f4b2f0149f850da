"""Checks that run before any training: the CLI's parser, which checks config files (`config_files`) and turns option
errors into one line (`messages`), and whether output folders can be written. Each problem becomes one line that names
the bad value and what would be valid."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningArgumentParser

from .config_files import CONFIG_FLAGS, config_file_problem, config_files, dropped_init_args
from .errors import SeqmixError
from .messages import init_options, one_line
from .private_api import option_strings, subcommand_parsers

# the checks the parser runs, importable from here as before
__all__ = ["CONFIG_FLAGS", "OneLineErrorParser", "config_file_problem", "config_files", "dropped_init_args", "init_options",
           "one_line", "unwritable"]


class OneLineErrorParser(LightningArgumentParser):
    """LightningArgumentParser whose parse errors raise SeqmixError with one line instead of printing usage and exiting;
    config files are checked first so that malformed YAML names the file, line and column."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **{**kwargs, "exit_on_error": False})

    def parse_args(self, args: Sequence[str] | None = None, *rest: Any, **kwargs: Any) -> Any:
        """Parse like jsonargparse; any problem raises train.cli.SeqmixError."""

        argv = list(args) if isinstance(args, (list, tuple)) else []
        command = self.prog.replace(" [options]", "")  # "seqmix", or "seqmix fit" in a subcommand's parser
        if command == "seqmix" and argv and argv[0] in subcommand_parsers(self):
            command = f"seqmix {argv[0]}"
        for path in config_files(argv):
            problem = config_file_problem(path)
            if problem:
                raise SeqmixError(f"{command}: error: {problem}")
        try:
            cfg = super().parse_args(args, *rest, **kwargs)
        except ArgumentError as err:
            parser = getattr(err, "subcommand_parser", None) or self._subparser(argv)
            known = option_strings(parser)
            raise SeqmixError(f"{command}: error: {one_line(str(err), known, command)}") from None
        if " [options]" not in self.prog:  # the top parser (a subcommand's parser parses the same files too)
            subcommand = cfg.get("subcommand") if hasattr(cfg, "get") else None
            for note in dropped_init_args(config_files(argv), cfg.get(subcommand) if subcommand else cfg):
                print(f"seqmix: note: {note}", file=sys.stderr)
        return cfg

    def _subparser(self, argv: list[str]) -> LightningArgumentParser:
        return subcommand_parsers(self).get(argv[0], self) if argv else self


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
