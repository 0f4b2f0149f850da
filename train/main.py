"""The `seqmix` console script: the trainer commands (LightningCLI, in `cli`) and the tools (in `tools/`)."""

from __future__ import annotations

import sys

from .cli import TRAINER_SUBCOMMANDS
from .cli import main as trainer_main
from .dotted import import_object
from .errors import SeqmixError, report

SUBCOMMANDS = {
    "bench": "seqmix.train.tools.bench.cli:main",
    "evaluate": "seqmix.train.tools.evaluate.cli:main",
    "sweep": "seqmix.train.tools.sweep.main:main",
    "compare": "seqmix.train.tools.compare:main",
    "reproduce": "seqmix.train.tools.reproduce.cli:main",
}
"""Tools: name -> "module:function", imported only when run; every one is `main(argv: list[str]) -> int`."""

DESCRIPTIONS = {
    "fit": "train a model (e.g. seqmix fit -c experiments/configs/mqar.yaml -c experiments/configs/mixers/mamba.yaml)",
    "validate": "evaluate a model on the validation split(s)",
    "test": "evaluate a model on the test split(s) (e.g. --ckpt_path <run dir>/checkpoints/<name>.ckpt)",
    "predict": "run a model over the predict split",
    "bench": "measure training / prefill / decode throughput and memory across sequence lengths",
    "evaluate": "sweep trained checkpoints over context length (x needle depth): extrapolation curves, heatmaps",
    "sweep": "run a W&B sweep file (grid / random) locally, no W&B server needed",
    "compare": "train every mixer at one matched size on MQAR, benchmark them, write one report",
    "reproduce": "re-run a published finding (seqmix reproduce --list), our numbers beside the paper's",
}


def usage() -> str:
    """The top-level help: every subcommand."""
    width = max(map(len, DESCRIPTIONS))
    lines = ["usage: seqmix <command> [options]", "", "Compare sequence mixers at matched size.", "",
             "training and evaluation (LightningCLI; `seqmix <command> --help` lists every option):"]
    lines += [f"  {name:<{width}}  {DESCRIPTIONS[name]}" for name in TRAINER_SUBCOMMANDS]
    lines += ["", "tools (`seqmix <tool> --help`):"]
    lines += [f"  {name:<{width}}  {DESCRIPTIONS.get(name, '')}" for name in SUBCOMMANDS]
    return "\n".join(lines)


def run_tool(command: str, argv: list[str]) -> int:
    """Import and run one of SUBCOMMANDS with its arguments; its exit status."""
    try:
        func = import_object(SUBCOMMANDS[command])
    except (ImportError, AttributeError) as err:
        raise SeqmixError(f"seqmix {command} is not available: {err}") from err
    return func(argv)


def main(args: list[str] | None = None) -> None:
    """The `seqmix` console script; exits with the command's status when it is not 0."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        if not argv:
            sys.exit(2)
        return
    try:
        if argv[0] in SUBCOMMANDS:
            code = run_tool(argv[0], argv[1:])
        elif argv[0].startswith("-") or argv[0] in TRAINER_SUBCOMMANDS:
            code = trainer_main(argv)
        else:
            raise SeqmixError(f"unknown command {argv[0]!r}; choose one of {', '.join([*TRAINER_SUBCOMMANDS, *SUBCOMMANDS])}")
    except SeqmixError as err:
        report(str(err))
        code = 2
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
