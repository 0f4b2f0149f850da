"""Training progress for terminals and for logs: a redrawn bar on a TTY, a plain line every N steps elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from .checks import check_int

DEFAULT_EVERY_N_STEPS = 50


class LineProgress(ProgressBar):
    """Progress for a log file or batch job: one line every `every_n_steps` optimizer steps and after validation."""

    def __init__(self, every_n_steps: int = DEFAULT_EVERY_N_STEPS, stream: TextIO | None = None):
        super().__init__()
        check_int("every_n_steps", every_n_steps)
        self.every_n_steps, self.stream = every_n_steps, stream
        self._enabled, self._last_step, self._start = True, -1, 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, text: str, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        print(f"{text} {shown}".rstrip(), file=self.stream or sys.stderr, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step != self._last_step and (step % self.every_n_steps == 0 or step == trainer.max_steps):
            self._last_step = step
            total = f"/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 else ""
            elapsed = time.perf_counter() - self._start
            self._line(f"step {step}{total} epoch {trainer.current_epoch} {elapsed:.0f}s", trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._line(f"validation at step {trainer.global_step}:", trainer, pl_module)


def progress_bar(stream: TextIO | None = None, every_n_steps: int = DEFAULT_EVERY_N_STEPS) -> ProgressBar:
    """Lightning's redrawn bar when `stream` (default stderr) is a terminal, else a `LineProgress` writing to it."""
    stream = stream or sys.stderr
    if stream.isatty():
        return TQDMProgressBar()
    return LineProgress(every_n_steps, stream)
