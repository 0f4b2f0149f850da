"""Training callbacks: throughput and peak memory, and the final_metrics.json summary a sweep runner reads."""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from .checks import check_int
from .io import atomic_write

FINAL_METRICS_FILE = "final_metrics.json"
FINAL_METRICS_SCHEMA = 1


def peak_memory(device: torch.device) -> tuple[str, int]:
    """(metric name, bytes): CUDA peak allocated memory on a GPU, else this process's peak resident set size."""
    if device.type == "cuda":
        return "perf/peak_mem_cuda_bytes", torch.cuda.max_memory_allocated(device)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return "perf/peak_rss_bytes", rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


class PerfMonitor(Callback):
    """Logs `perf/tokens_per_s` (training tokens / wall time over the last `window` steps, not counting the first
    `warmup_steps` steps nor validation pauses) and peak memory (`perf/peak_mem_cuda_bytes` on CUDA, else
    `perf/peak_rss_bytes`, the process's peak RSS). Tokens per batch on this process: the module's ``batch_tokens(batch)``
    where it has one (LMTask: ``input_ids.numel()``), else ``input_ids.numel()``."""

    def __init__(self, window: int = 20, warmup_steps: int = 5):
        super().__init__()
        check_int("PerfMonitor: window", window)
        check_int("PerfMonitor: warmup_steps", warmup_steps, minimum=0)
        self.window, self.warmup_steps = window, warmup_steps
        self._steps: deque[tuple[float, int]] = deque(maxlen=window)
        self._last: float | None = None
        self._seen = 0

    @staticmethod
    def _now(pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._steps.clear()
        self._last, self._seen = None, 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._last is None:  # after start or a validation pause: time this step from here
            self._last = self._now(pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = self._now(pl_module)
        elapsed, self._last = now - (self._last if self._last is not None else now), now
        self._seen += 1
        if self._seen > self.warmup_steps and elapsed > 0:
            count = getattr(pl_module, "batch_tokens", None)
            self._steps.append((elapsed, count(batch) if callable(count) else batch["input_ids"].numel()))
        if self._steps:
            seconds = sum(s for s, _ in self._steps)
            pl_module.log("perf/tokens_per_s", sum(n for _, n in self._steps) / seconds, on_step=True, on_epoch=False)
        name, value = peak_memory(pl_module.device)
        pl_module.log(name, float(value), on_step=True, on_epoch=False)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None


def _plain(value: Any) -> Any:
    """JSON-safe copy: tensors and numpy scalars to numbers, tuples to lists, other objects to their repr."""
    if isinstance(value, torch.Tensor) or type(value).__module__ == "numpy":
        value = value.tolist()  # a 0-d tensor / numpy scalar becomes a Python number
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


class FinalMetrics(Callback):
    """At the end of fit, validate and test, writes ``<trainer.log_dir>/final_metrics.json`` (atomically).

    Schema (version 1), a JSON object:

    - ``schema``: 1.
    - ``stage``: "fit", "validate" or "test" (the last stage that wrote the file; metrics accumulate across stages of
      one process, a later stage overwriting the metrics it logs again).
    - ``metrics``: {name: final value} for every metric logged so far, e.g. ``train/loss``, ``val/loss``,
      ``val/acc`` (``val/acc/<loader>`` with several loaders), ``test/acc``, ``perf/tokens_per_s``,
      ``perf/peak_rss_bytes`` or ``perf/peak_mem_cuda_bytes``. Numbers; non-finite values as the strings "nan"/"inf".
    - ``model``: the resolved model, flat: ``mixer_name``, ``d_model``, ``d_ff``, ``n_layers``, ``vocab_size``,
      ``params_total``, ``params_non_embedding``, ``param_budget`` (null when not sized to a budget).
    - ``hparams``: the LightningModule's hyperparameters (for LMTask: ``model`` as a plain ModelConfig dict whose
      ``mixer`` is a registry name or ``{class_path, init_args}``, ``param_budget``, ``lr``, ...).
    - ``data``: the data module's class (``class_path``) and hyperparameters (``hparams``), or null.
    - ``global_step``, ``epoch``: the trainer's counters when written.
    - ``log_dir``: the directory the file is in.
    """

    def __init__(self, filename: str = FINAL_METRICS_FILE):
        super().__init__()
        self.filename = filename
        self.metrics: dict[str, Any] = {}

    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str,
                directory: Path | None = None) -> dict[str, Any]:
        """The object written to the file (`directory`: where it goes, if already known)."""
        self.metrics.update(_plain(dict(trainer.callback_metrics)))
        dm = trainer.datamodule
        summary = getattr(pl_module, "model_summary", None)
        return {
            "schema": FINAL_METRICS_SCHEMA,
            "stage": stage,
            "metrics": dict(sorted(self.metrics.items())),
            "model": _plain(summary()) if callable(summary) else None,
            "hparams": _plain({k: v for k, v in pl_module.hparams.items() if not k.startswith("_")}),
            "data": None if dm is None else {
                "class_path": f"{type(dm).__module__}.{type(dm).__qualname__}",
                "hparams": _plain({k: v for k, v in dm.hparams.items() if not k.startswith("_")}),
            },
            "global_step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "log_dir": str(directory if directory is not None else self.directory(trainer)),
        }

    @staticmethod
    def directory(trainer: L.Trainer) -> Path:
        """Where the file goes: the trainer's log_dir (the first logger's run directory), else its root dir."""
        return Path(trainer.log_dir or trainer.default_root_dir)

    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> Path | None:
        """Write the summary (on global rank 0 only); returns the path written. Call it on every process: under DDP,
        finding the directory is a broadcast from rank 0."""
        directory = self.directory(trainer)
        summary = self.summary(trainer, pl_module, stage, directory)
        if not trainer.is_global_zero:
            return None
        path = directory / self.filename
        atomic_write(path, json.dumps(summary, indent=2) + "\n")
        return path

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module, "fit")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self.write(trainer, pl_module, "validate")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module, "test")
