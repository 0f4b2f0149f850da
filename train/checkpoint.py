"""Checkpoints of `seqmix fit`: written atomically, on by default at a step cadence, and resumed exactly.

- `AtomicCheckpointIO`: every checkpoint file is written beside its final name and renamed over it (train.io), so a
  crash, SIGKILL or full disk never leaves a truncated ``.ckpt`` under the final name.
- `RunCheckpoint`: a ModelCheckpoint that by default keeps ``last.ckpt`` and the newest ``epoch=E-step=S.ckpt`` in
  ``<run dir>/checkpoints/``, saves every `every_n_train_steps` optimizer steps, and also at the end of training.
- `ResumeState`: puts a resumed fit back where the checkpoint left it: the global random number generators and the
  position of every resumable training loader (train.data.resumable) in its epoch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_warn

from .io import atomic_open
from .private_api import save_checkpoint_now

DEFAULT_EVERY_N_TRAIN_STEPS = 500
RESUME_KEY = "seqmix_resume"
"""The checkpoint entry ResumeState writes: {"rng": ..., "train_loaders": [loader.state_dict(), ...]}."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file beside the checkpoint, fsync, then rename it over the final name.

    Lightning's own local save buffers the checkpoint in memory and moves a file from the system temp folder into
    place: not fsynced, and a plain copy (which a crash can truncate) when that folder is on another file system.
    Remote paths (s3://, gs://, ...) keep Lightning's behaviour."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any | None = None) -> None:
        """Write `checkpoint` to `path` atomically (local paths), else as Lightning does."""
        protocol, _ = fsspec.core.split_protocol(str(path))
        if storage_options is not None or protocol not in (None, "file", "local"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint with seqmix's defaults: ``last.ckpt`` plus the newest periodic checkpoint, saved every
    `every_n_train_steps` steps (500; None: after each validation instead) and at the end of training, in
    ``<run dir>/checkpoints/``. Every ModelCheckpoint option is accepted (``--checkpoint.<option>`` on the CLI)."""

    def __init__(self, *, every_n_train_steps: int | None = DEFAULT_EVERY_N_TRAIN_STEPS,
                 save_last: bool | str | None = True, **kwargs: Any):
        super().__init__(every_n_train_steps=every_n_train_steps, save_last=save_last, **kwargs)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the final state too, unless the last save was at this very step."""
        save_checkpoint_now(self, trainer)
        super().on_train_end(trainer, pl_module)


def _leaves(tree: Any) -> Iterator[Any]:
    """The loaders in Lightning's train_dataloader structure (a loader, or lists / dicts of them), in order."""
    if isinstance(tree, Mapping):
        for value in tree.values():
            yield from _leaves(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _leaves(value)
    elif tree is not None:
        yield tree


def _stateful(loader: Any) -> bool:
    return callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None))


def rng_state() -> dict[str, Any]:
    """The global random number generators' states, as plain data (safe for weights_only loading)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(mt), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what rng_state returned (CUDA only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class ResumeState(Callback):
    """Saves, with every checkpoint, the global RNG states (torch, CUDA, Python, NumPy) and each resumable training
    loader's position; on resume, restores both when training starts, just before the first batch.

    Lightning saves resumable loaders' states too, but does not load them when ``configure_optimizers`` has already
    built the loaders (LMTask does, through ``trainer.estimated_stepping_batches``: Lightning issue #20550), and keeps
    no RNG state. Under DDP the checkpoint holds rank 0's RNG state, which every rank restores: ranks seeded alike and
    running the same code have the same state. Loading twice is harmless: a loader's state applies when it is next
    iterated."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: dict[str, Any] | None = None

    @staticmethod
    def _loaders(trainer: L.Trainer) -> list[Any]:
        try:
            loaders = trainer.train_dataloader
        except AttributeError:
            return []
        return [loader for loader in _leaves(loaders) if _stateful(loader)]

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RESUME_KEY] = {
            "rng": rng_state(), "train_loaders": [loader.state_dict() for loader in self._loaders(trainer)],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(RESUME_KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pending, self._pending = self._pending, None
        if not pending:
            return
        loaders, states = self._loaders(trainer), pending.get("train_loaders") or []
        if len(loaders) == len(states):
            for loader, state in zip(loaders, states, strict=True):
                loader.load_state_dict(state)
        elif states:
            rank_zero_warn(f"the checkpoint has {len(states)} training loader states but the run has {len(loaders)} "
                           "resumable loaders; the training data restarts from the beginning of the epoch")
        if pending.get("rng"):
            set_rng_state(pending["rng"])
