"""Test-only callbacks and helpers for runs of `python -m seqmix.train.cli fit` in subprocesses (resume, DDP)."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.callbacks import Callback

REPO = Path(__file__).resolve().parents[2]


def example_key(row: Any) -> str:
    """A short content hash of one example's input ids (identical examples share it)."""
    return hashlib.blake2b(row.numpy().tobytes(), digest_size=6).hexdigest()


RECORD_ENV = "SEQMIX_TEST_RECORD"
PACE_ENV = "SEQMIX_TEST_PACE_S"


class RecordBatches(Callback):
    """Appends one line per training step to the file named by $SEQMIX_TEST_RECORD ({rank}: the global rank): the
    step number, the epoch, then a content key of every example in the batch. $SEQMIX_TEST_PACE_S sleeps after each
    step, so that a test can catch the run mid-way."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        path = os.environ.get(RECORD_ENV)
        if path:
            keys = " ".join(example_key(row) for row in batch["input_ids"].cpu())
            with open(path.format(rank=trainer.global_rank), "a") as f:
                f.write(f"{trainer.global_step + 1} {trainer.current_epoch} {keys}\n")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        time.sleep(float(os.environ.get(PACE_ENV, 0)))


def read_steps(path: Path, upto: int | None = None) -> list[tuple[int, int, list[str]]]:
    """(step, epoch, example keys) per recorded step, those after `upto` dropped."""
    rows = []
    for line in path.read_text().splitlines():
        step, epoch, *keys = line.split()
        if upto is None or int(step) <= upto:
            rows.append((int(step), int(epoch), keys))
    return rows


def write_config(path: Path, root: Path, max_steps: int, every: int, val_every: int, **data: Any) -> Path:
    """A tiny MQAR fit config (mixer-only attention, d_model 16) writing under `root`."""
    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": max_steps, "val_check_interval": val_every, "check_val_every_n_epoch": None,
                    "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(root), "accelerator": "cpu",
                    "callbacks": [{"class_path": "tests.train.run_helpers.RecordBatches"}]},
        "checkpoint": {"every_n_train_steps": every},
        "model": {"model": {"d_model": 16, "n_layers": 1, "mlp_ratio": 0.0}, "lr": 3e-3, "warmup_steps": 4},
        "data": {"class_path": "seqmix.train.data.mqar.MQARDataModule",
                 "init_args": {"vocab_size": 32, "seq_len": 16, "num_kv_pairs": 2, "num_train_examples": 48,
                               "num_val_examples": 16, "batch_size": 8, **data}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def write_mamba_config(path: Path, root: Path, **trainer: Any) -> Path:
    """A tiny MQAR fit config (mixer-only Mamba, d_model 16, 64 training examples) writing under `root`; `trainer`
    holds the run's own trainer options (max_steps, validation, callbacks)."""
    config = {
        "trainer": {"enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(root),
                    "log_every_n_steps": 1, **trainer},
        "model": {"model": {"mixer": "mamba", "d_model": 16, "n_layers": 2, "mlp_ratio": 0.0}, "warmup_steps": 0},
        "data": {"class_path": "seqmix.train.data.mqar.MQARDataModule",
                 "init_args": {"vocab_size": 32, "seq_len": 16, "num_kv_pairs": 2, "num_train_examples": 64,
                               "num_val_examples": 16, "batch_size": 8}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def fit_command(config: Path, *args: str) -> list[str]:
    """`python -m seqmix.train.cli fit -c config --wandb disabled *args`."""
    return [sys.executable, "-m", "seqmix.train.cli", "fit", "-c", str(config), "--wandb", "disabled", *args]


def env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: this checkout importable, W&B off, two threads (same arithmetic)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "2",
            "PYTHONUNBUFFERED": "1", **extra}


def start(cmd: list[str], log: Path, **extra_env: str) -> subprocess.Popen:
    """Start `cmd` in the repository root, stdout and stderr into `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env(**extra_env), stdout=out, stderr=subprocess.STDOUT)


def run(cmd: list[str], log: Path, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    """Run `cmd` in the repository root, stdout and stderr into `log`; fail with the log's tail if it fails."""
    with open(log, "w") as out:
        done = subprocess.run(cmd, cwd=REPO, env=env(**extra_env), stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{log.read_text()[-4000:]}")
    return done


def logged(metrics_csv: Path, name: str) -> dict[int, float]:
    """{step: value} of one metric in a CSVLogger metrics.csv."""
    with open(metrics_csv, newline="") as f:
        return {int(r["step"]): float(r[name]) for r in csv.DictReader(f) if r.get(name)}
