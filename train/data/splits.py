"""The seeded splits of every synthetic task: the shared options, fixed val / test / train sets, disjoint, and loaders."""

from __future__ import annotations

import hashlib
import inspect
from abc import abstractmethod
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..checks import check_int
from .batch import DataError
from .resumable import train_loader
from .tasks import class_path


def seeded_generator(seed: int, *stream: object) -> torch.Generator:
    """A CPU generator whose seed is derived from (seed, *stream), so every split/purpose gets its own stream."""
    digest = hashlib.sha256("/".join(map(str, (seed, *stream))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class SeededSplitsDataModule(L.LightningDataModule):
    """Base of every registered task: fixed seeded val / test / train sets, each disjoint from the held-out ones drawn
    before it, served by plain loaders (val, test) and a resumable, seeded, DDP-sharded training loader.

    A task says what an example is through four hooks: `split_examples` (n examples at the training settings from a
    split's stream), `example_keys` (one hashable key per example, to keep the splits disjoint), `make_dataset` (the
    split's dataset from a batch dict) and `overlap_error` (the error when a split cannot be drawn disjoint in
    `max_rounds` draws). `split_rng`, `shuffle_seed` and `check_seed` say how the seed is used.

    A class built on this base declares only its own options and takes `**kwargs: Any` for the options declared here
    (batch_size, num_train, num_val, num_test, seed, num_workers), passing them on by name after setting (and checking)
    its own. jsonargparse resolves those `**kwargs` to this signature, so the CLI lists and takes every option, and
    `save_hyperparameters` below records every option of every class in the chain."""

    task_name: ClassVar[str] = ""
    """The name the task is registered under (set by `@register_task`)."""
    max_rounds: ClassVar[int] = 50
    """Draws allowed for a split whose examples keep landing in an earlier split."""
    message_prefix: ClassVar[str] = ""
    """Put before the name of a bad shared option in its error message (MQAR's messages all start "MQAR: ")."""

    def __init__(
        self,
        batch_size: int = 32,
        num_train: int = 10_000,
        num_val: int = 500,
        num_test: int = 500,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        p = self.message_prefix
        self.batch_size = check_int(f"{p}batch_size", batch_size)
        self.sizes = {"val": check_int(f"{p}num_val", num_val), "test": check_int(f"{p}num_test", num_test),
                      "train": check_int(f"{p}num_train", num_train)}  # in drawing order: held-out splits first
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.num_workers = check_int(f"{p}num_workers", num_workers, minimum=0)
        self.seed = self.check_seed(seed)
        self.datasets: dict[str, Dataset] = {}
        self.save_hyperparameters()
        # recorded again in the order they were before this base existed: the options of the class built on it first
        # (seq_len, vocab_size or dim, ...), then the shared ones, then the task's (checkpoints and summaries keep it)
        lead = next(cls for cls in type(self).__mro__ if SeededSplitsDataModule in cls.__bases__)
        first = [name for name in inspect.signature(lead.__init__).parameters if name in self.hparams]
        order = dict.fromkeys([*first, *self.hparams])
        self.hparams.clear()
        self.save_hyperparameters(*order)
        self.record_class_path()

    def record_class_path(self) -> None:
        """Name the class in the hyperparameters the way LightningCLI does, so a checkpoint tells its task."""
        self.hparams["_class_path"] = class_path(type(self))

    def check_seed(self, seed: int) -> int:
        """Return seed if the task's random streams can be seeded with it (torch generators: any integer), else raise."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{self.message_prefix}seed must be an integer, got {seed!r}")
        return seed

    def split_rng(self, split: str) -> Any:
        """The random stream a split is drawn from (each split its own, fixed by the seed)."""
        return seeded_generator(self.seed, split)

    @property
    def shuffle_seed(self) -> int:
        """Seed of the training order (combined with the epoch by the sampler)."""
        return seeded_generator(self.seed, "shuffle").initial_seed()

    @abstractmethod
    def split_examples(self, n: int, rng: Any) -> dict[str, Tensor]:
        """n examples at the training settings, drawn from a split's random stream `rng`."""

    @abstractmethod
    def example_keys(self, batch: dict[str, Tensor]) -> list[bytes]:
        """One hashable key per example of `batch`: two examples are the same if their keys are."""

    @abstractmethod
    def make_dataset(self, batch: dict[str, Tensor]) -> Dataset:
        """The dataset of a drawn split."""

    @abstractmethod
    def overlap_error(self, split: str, wanted: int, have: int) -> DataError:
        """The error when only `have` of `wanted` examples of `split` could be drawn outside the earlier splits."""

    def setup(self, stage: str | None = None) -> None:
        """Draw the three splits once, val then test then train, each from its own stream minus the earlier ones."""
        if self.datasets:
            return
        earlier: set[bytes] = set()
        for split, wanted in self.sizes.items():
            rng, kept, have = self.split_rng(split), [], 0
            for _ in range(self.max_rounds):
                batch = self.split_examples(wanted - have, rng)
                keep = torch.tensor([key not in earlier for key in self.example_keys(batch)], dtype=torch.bool)
                kept.append({k: v[keep] for k, v in batch.items()})
                have += int(keep.sum())
                if have == wanted:
                    break
            else:
                raise self.overlap_error(split, wanted, have)
            data = {k: torch.cat([p[k] for p in kept]) for k in kept[0]}
            self.datasets[split] = self.make_dataset(data)
            if split != "train":
                earlier.update(self.example_keys(data))

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        return DataLoader(self.datasets[split], batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Shuffled anew each epoch (order seeded by `shuffle_seed` and the epoch), resumable mid-epoch, sharded
        under DDP."""
        self.setup()
        return train_loader(self, self.datasets["train"], self.batch_size, seed=self.shuffle_seed,
                            num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
