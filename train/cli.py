"""The `seqmix` command: Lightning's fit / validate / test / predict for any mixer and task, plus the other tools."""

from __future__ import annotations

import netrc
import os
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.core import LightningDataModule
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.plugins.io import CheckpointIO

from .callbacks import FinalMetrics, PerfMonitor
from .checkpoint import AtomicCheckpointIO, ResumeState, RunCheckpoint
from .config_files import model_class_given
from .data import DataError
from .errors import SeqmixError, report
from .guards import NonFiniteError, NonFiniteGuard
from .module import DEFAULT_MODEL, LMTask
from .preflight import OneLineErrorParser, unwritable
from .progress import progress_bar

TRAINER_SUBCOMMANDS = ("fit", "validate", "test", "predict")
WANDB_MODES = ("auto", "online", "offline", "disabled")
TRAINER_DEFAULTS = {"accelerator": "auto", "log_every_n_steps": 10}
DEFAULT_ROOT = "runs"
"""Where runs go when --trainer.default_root_dir is not given: runs/<run_name>/version_N."""


def _wandb_logged_in() -> bool:
    """Whether `wandb login` stored a key (in ~/.netrc, for api.wandb.ai or WANDB_BASE_URL's host)."""
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(flag: str = "auto", env: Mapping[str, str] | None = None) -> str:
    """The W&B mode to run in: the flag if given; else WANDB_MODE; else online if W&B is configured (WANDB_API_KEY set
    or `wandb login` done); else offline. Never one that needs an account the user has not set up."""
    env = os.environ if env is None else env
    if flag not in WANDB_MODES:
        raise SeqmixError(f"unknown --wandb {flag!r}; choose one of {', '.join(WANDB_MODES)}")
    if flag != "auto":
        return flag
    aliases = {"dryrun": "offline", "run": "online"}
    if env.get("WANDB_MODE"):
        mode = aliases.get(env["WANDB_MODE"], env["WANDB_MODE"])
        if mode not in WANDB_MODES[1:]:
            raise SeqmixError(f"unknown WANDB_MODE={env['WANDB_MODE']!r}; use online, offline or disabled")
        return mode
    if env.get("WANDB_API_KEY") or (env is os.environ and _wandb_logged_in()):
        return "online"
    return "offline"


def _innermost_value_error(err: BaseException) -> BaseException:
    """The original ValueError under jsonargparse's wrappers (e.g. "Does not validate against any of the Union ...")."""
    found, seen = err, 0
    while err is not None and seen < 20:
        if isinstance(err, ValueError):
            found = err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return found


def data_vocab_size(data: Any) -> int:
    """The model's vocab_size for a data module: its own, or ModelConfig's default for one without tokens (a model of
    real-valued inputs has no embedding to size)."""
    return getattr(data, "vocab_size", None) or DEFAULT_MODEL.vocab_size


def data_token_dim(data: Any) -> int | None:
    """The width of a data module's real-valued tokens (its `token_dim`), None for a token task."""
    return getattr(data, "token_dim", None)


class SeqmixCLI(LightningCLI):
    """LightningCLI with seqmix's links, callbacks, loggers and one-line configuration errors."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--wandb", type=Literal[WANDB_MODES], default="auto",
                            help=f"W&B logging: {', '.join(WANDB_MODES)} (auto: online only if W&B is configured)")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run directory / W&B run name (default: <task>-<mixer>)")
        if self.subclass_mode_model:  # `model` is {class_path, init_args}: LMTask or a subclass (see model_class_given)
            parser.link_arguments("data", "model.init_args.model.vocab_size", compute_fn=data_vocab_size,
                                  apply_on="instantiate")
            parser.link_arguments("data", "model.init_args.d_in", compute_fn=data_token_dim, apply_on="instantiate")
        else:
            parser.link_arguments("data.vocab_size", "model.model.vocab_size", apply_on="instantiate")
        parser.add_lightning_class_args(PerfMonitor, "perf")
        parser.add_lightning_class_args(FinalMetrics, "final_metrics")
        parser.add_lightning_class_args(NonFiniteGuard, "nonfinite")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse `args` with sys.argv showing just the program (LightningCLI warns when both carry arguments); the
        real sys.argv is back while the command runs, for Lightning's DDP launcher re-executes it per process."""
        with _program_args("seqmix"):
            super().parse_arguments(parser, args)

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Parsers whose errors are one line (SeqmixError), config files checked first (see train.preflight)."""
        if self.parser_class is LightningArgumentParser:
            self.parser_class = OneLineErrorParser
        return super().init_parser(**kwargs)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as err:  # archs and the data modules validate their arguments with ValueErrors
            command = f"seqmix {self.subcommand}" if self.subcommand else "seqmix"
            raise SeqmixError(f"{command}: error: {_innermost_value_error(err)}") from err

    def option(self, config: Any, key: str, default: Any = None) -> Any:
        """`key` of the running subcommand's part of `config` (the whole config when there is no subcommand)."""
        part = config.get(self.subcommand) if self.subcommand else config
        return part.get(key, default) if part is not None else default

    def check_outputs(self, subcommand: str) -> None:
        """Check every output folder can be written before anything runs."""
        trainer = self.trainer
        folders = [("--trainer.default_root_dir", trainer.default_root_dir)]
        folders += [(f"the {type(lg).__name__} folder", lg.save_dir) for lg in trainer.loggers if lg.save_dir]
        folders += [("the checkpoint dirpath", c.dirpath) for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)]
        for what, folder in folders:
            problem = unwritable(folder)
            if problem:
                raise SeqmixError(f"seqmix {subcommand}: error: {what} {str(folder)!r} cannot be written: {problem}")
        saved = Path(trainer.default_root_dir) / "config.yaml"
        if self.save_config_callback is not None and not trainer.loggers and saved.exists():  # Lightning would stop later
            raise SeqmixError(f"seqmix {subcommand}: error: {saved} is an earlier run's config and --trainer.logger false "
                              "writes this run's there too; choose another --trainer.default_root_dir (or keep a logger: "
                              "each run gets its own version_N folder)")

    def run_name(self) -> str:
        """--run_name, else <task>-<mixer> (e.g. mqar-mamba)."""
        name = self.option(self.config, "run_name")
        if name:
            return name
        task = type(self.datamodule).__name__.removesuffix("DataModule").lower() if self.datamodule else "seqmix"
        config = getattr(self.model, "config", None)
        return f"{task}-{config.mixer_name}" if config is not None else task

    def default_loggers(self, root: str | None) -> list[Logger]:
        """CSV always (<root>/<run_name>/version_N, the run directory); W&B too, in its resolved mode, unless disabled."""
        root = root or DEFAULT_ROOT
        loggers: list[Logger] = [CSVLogger(save_dir=root, name=self.run_name())]
        mode = wandb_mode(self.option(self.config, "wandb"))
        if mode != "disabled":
            from lightning.pytorch.loggers import WandbLogger

            os.makedirs(root, exist_ok=True)  # wandb keeps its files in <root>/wandb
            project = os.environ.get("WANDB_PROJECT", "seqmix")  # a W&B sweep agent sets its own
            loggers.append(WandbLogger(save_dir=root, name=self.run_name(), project=project, mode=mode))
        return loggers

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self.option(self.config_init, "trainer", {}) or {}
        if trainer_config.get("logger") in (None, True):  # not chosen by the user: ours
            kwargs["logger"] = self.default_loggers(trainer_config.get("default_root_dir"))
        plugins = trainer_config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        callbacks = trainer_config.get("callbacks")
        callbacks = [] if callbacks is None else list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        if trainer_config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(progress_bar())  # a log file gets a line every N steps, not bar redraws
        kwargs["callbacks"] = [*callbacks, ResumeState()]
        part = self.config_init.get(self.subcommand) if self.subcommand else self.config_init
        if trainer_config.get("enable_checkpointing") is False and isinstance(part.get("checkpoint"), RunCheckpoint):
            part["checkpoint"] = Callback()  # checkpointing off: our RunCheckpoint would make Lightning refuse to start
        return super().instantiate_trainer(**kwargs)

    def last_checkpoint(self) -> Path | None:
        """The newest last*.ckpt of this run name: in any version of the run directory, or a checkpoint dirpath."""
        trainer = self.trainer
        folders = [Path(c.dirpath) for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)]
        if trainer.loggers:
            logger = trainer.loggers[0]
            root = Path(logger.save_dir or trainer.default_root_dir)
            folders += (root / logger.name if logger.name else root).glob("*/checkpoints")
        else:
            folders.append(Path(trainer.default_root_dir) / "checkpoints")
        found = [p for folder in folders for p in folder.glob("last*.ckpt") if p.is_file()]
        return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None

    def _resolve_ckpt_path(self, required: bool) -> None:
        """--ckpt_path last: the newest last checkpoint of this run name, whichever version directory it is in
        (Lightning looks only in the new run's own, empty, directory). Not found: fit starts afresh, others fail."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") != "last":
            return
        path = self.last_checkpoint()
        if path is None and required:
            raise SeqmixError(f"seqmix {self.subcommand}: error: --ckpt_path last: no last checkpoint of run "
                              f"{self.run_name()!r} found")
        if self.trainer.is_global_zero:
            message = f"resuming from {path}" if path else f"no last checkpoint of run {self.run_name()!r}: starting afresh"
            print(f"seqmix: {message}", file=sys.stderr)
        config["ckpt_path"] = str(path) if path else None

    def before_fit(self) -> None:
        self.check_outputs("fit")
        self._resolve_ckpt_path(required=False)

    def before_validate(self) -> None:
        self.check_outputs("validate")
        self._resolve_ckpt_path(required=True)

    def before_test(self) -> None:
        self.check_outputs("test")
        self._resolve_ckpt_path(required=True)

    def before_predict(self) -> None:
        self.check_outputs("predict")

    def after_fit(self) -> None:
        self._report()

    def after_validate(self) -> None:
        self._report()

    def after_test(self) -> None:
        self._report()

    def _report(self) -> None:
        log_dir = self.trainer.log_dir  # on every process: under DDP it is a broadcast from rank 0
        if self.trainer.is_global_zero and log_dir:
            print(f"seqmix: run directory {log_dir}", file=sys.stderr)


@contextmanager
def _program_args(prog: str):
    """Present sys.argv as just the program while LightningCLI parses explicit args (it warns about both)."""
    saved = sys.argv
    sys.argv = [prog]
    try:
        yield
    finally:
        sys.argv = saved


def cli(args: list[str], run: bool = True) -> SeqmixCLI:
    """Run `fit|validate|test|predict [options]` through SeqmixCLI and return it; with run=False, only build the
    model, data and trainer from `[options]` (e.g. in a notebook: ``cli(["-c", "mqar.yaml"], run=False).model``)."""
    try:
        return _cli(args, run)
    except DataError as err:  # data problems met while preparing the data (a binary or empty corpus file, ...)
        subcommand = next((a for a in args if a in TRAINER_SUBCOMMANDS), "fit")
        raise SeqmixError(f"seqmix {subcommand}: error: {err}") from err


def _cli(args: list[str], run: bool) -> SeqmixCLI:
    return SeqmixCLI(
        LMTask,
        LightningDataModule,
        run=run,
        subclass_mode_model=model_class_given(args, TRAINER_SUBCOMMANDS),
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "seqmix", "description": "Compare sequence mixers at matched size."},
        args=args,
    )


def main(args: list[str] | None = None) -> int:
    """`seqmix fit|validate|test|predict [options]` (also `python -m seqmix.train.cli ...`); returns the exit status."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        cli(argv)
    except SeqmixError as err:
        report(str(err))
        return 2
    except NonFiniteError as err:  # training diverged: the run directory holds what was done
        report(f"seqmix {argv[0] if argv else 'fit'}: error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
