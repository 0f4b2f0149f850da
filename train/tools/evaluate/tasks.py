"""Checkpoints and their tasks: load a trained model, rebuild its data module, draw fresh examples at any length."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqmix.archs import LanguageModel

from ...data.synthetic import seeded_generator

TASKS = {
    "needle": "seqmix.train.data.needle.NeedleDataModule",
    "multi_needle": "seqmix.train.data.needle.MultiNeedleDataModule",
    "induction": "seqmix.train.data.induction.InductionDataModule",
    "selective_copying": "seqmix.train.data.copying.SelectiveCopyingDataModule",
    "mqar": "seqmix.train.data.mqar.MQARDataModule",
}
"""Task name -> data module class path (the class a checkpoint's data hyperparameters are given back to)."""

DEPTH_LABELS = {
    "needle": "needle depth (fraction of context)",
    "multi_needle": "queried needle's depth (fraction of context)",
    "induction": "first trigger's depth (fraction of context)",
}
"""What depth means, per task that has one (the heatmap's y axis)."""

DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_FACTORS = (1, 2, 4, 8, 16)  # default lengths: the training length times these


@dataclass
class Task:
    """A task rebuilt from a checkpoint's data hyperparameters, able to draw examples at any length (and depth)."""

    name: str
    datamodule: Any
    hparams: dict[str, Any]
    train_len: int
    has_depth: bool
    chance: float | None

    def sample(self, n: int, length: int, depth: float | None, seed: int) -> dict[str, Tensor]:
        """n examples at this length (and depth), from a stream that depends only on (seed, length, depth)."""
        if self.name == "mqar":
            from ...data.mqar import generate_mqar

            dm = self.datamodule
            rng = np.random.default_rng([seed, 1000, length])  # not one of MQAR's split streams (0, 1, 2)
            inputs, labels = generate_mqar(n, length, dm.num_kv_pairs, dm.vocab_size, dm.power_a, rng)
            return {"input_ids": inputs, "labels": labels}
        return self.datamodule.generate(n, length, depth, generator=eval_generator(seed, length, depth))

    def check(self, length: int) -> None:
        """Raise a ValueError naming the length if the task cannot be built there."""
        if self.name == "mqar":
            from ...data.mqar import check_mqar

            dm = self.datamodule
            check_mqar(length, dm.num_kv_pairs, dm.vocab_size, dm.power_a)
        else:
            self.datamodule.check(length)


def eval_generator(seed: int, length: int, depth: float | None) -> torch.Generator:
    """The random stream of one grid cell (separate from the train / val / test streams)."""
    return seeded_generator(seed, "evaluate", length, "random" if depth is None else repr(float(depth)))


def _import(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def run_config(ckpt: Path) -> dict[str, Any] | None:
    """The LightningCLI config.yaml of the run a checkpoint belongs to (<run>/checkpoints/x.ckpt), if there is one."""
    import yaml

    for candidate in (ckpt.parent.parent / "config.yaml", ckpt.parent / "config.yaml"):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text())
    return None


def infer_task(ckpt: Path, hparams: dict[str, Any]) -> str:
    """The task of a checkpoint: from the data class the CLI recorded in its hyperparameters, else its config.yaml."""
    class_path = hparams.get("_class_path") or ((run_config(ckpt) or {}).get("data") or {}).get("class_path")
    for name, path in TASKS.items():
        if class_path == path:
            return name
    raise ValueError(
        f"cannot tell the task of {ckpt} (data class {class_path!r}); pass --task, one of {', '.join(TASKS)}"
    )


def load_checkpoint(path: Path, device: torch.device) -> tuple[LanguageModel, dict[str, Any]]:
    """The trained LanguageModel (eval mode, on device) and the data module's hyperparameters it was trained with."""
    from ...module import LMTask

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    task = LMTask.load_from_checkpoint(path, map_location=device)
    raw = torch.load(path, map_location="cpu", weights_only=False)
    hparams = dict(raw.get("datamodule_hyper_parameters") or {})
    if not hparams:  # e.g. a checkpoint saved without a data module: fall back to the run's config.yaml
        hparams = dict(((run_config(path) or {}).get("data") or {}).get("init_args") or {})
    return task.model.to(device).eval(), hparams


def build_task(name: str, hparams: dict[str, Any], model_vocab: int) -> Task:
    """Rebuild the data module of `name` from hyperparameters (default: the class's, at the model's vocabulary)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    cls = _import(TASKS[name])
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")} or {"vocab_size": model_vocab}
    try:
        dm = cls(**hparams)
    except TypeError as err:
        raise ValueError(f"the checkpoint's data hyperparameters {hparams} do not fit task {name!r}: {err}") from err
    if dm.vocab_size > model_vocab:
        raise ValueError(f"task {name!r} uses vocab_size={dm.vocab_size} but the model only has {model_vocab} tokens")
    return Task(name, dm, hparams, dm.seq_len, bool(getattr(dm, "has_depth", False)), getattr(dm, "chance_accuracy", None))


