"""Shared machinery of the seeded synthetic tasks: one base data module with disjoint splits, seeding and checks."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..checks import check_int
from .batch import IGNORE_INDEX, DataError, TokenDataset
from .resumable import train_loader
from .tasks import class_path


def seeded_generator(seed: int, *stream: object) -> torch.Generator:
    """A CPU generator whose seed is derived from (seed, *stream), so every split/purpose gets its own stream."""
    digest = hashlib.sha256("/".join(map(str, (seed, *stream))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def check_depth(depth: float | None) -> float | None:
    """Return depth if it is None (random) or a fraction of the context in [0, 1], else raise."""
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not 0.0 <= float(depth) <= 1.0:
        raise ValueError(f"depth must be a fraction of the context in [0, 1] (or None for random), got {depth!r}")
    return float(depth)


def place(depth: float | None, span: int, n: int, generator: torch.Generator) -> Tensor:
    """Start indices (n,) in [0, span]: round(depth * span) for a fixed depth, uniform over all of them for None."""
    if depth is None:
        return torch.randint(0, span + 1, (n,), generator=generator)
    return torch.full((n,), round(depth * span), dtype=torch.long)


def uniform(low: int, high: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Integers uniform in [low, high), int64."""
    return torch.randint(low, high, shape, generator=generator)


def shift(sequence: Tensor, answer: Tensor) -> dict[str, Tensor]:
    """Turn full sequences (B, L+1) and their answer mask into next-token inputs (B, L) and labels (B, L)."""
    labels = sequence[:, 1:].masked_fill(~answer[:, 1:], IGNORE_INDEX)
    return {"input_ids": sequence[:, :-1].contiguous(), "labels": labels.contiguous()}


def row_keys(batch: dict[str, Tensor]) -> list[bytes]:
    """One hashable key per example (its inputs and labels), to test splits for overlap."""
    rows = torch.cat([batch["input_ids"], batch["labels"]], dim=1).to(torch.int32).numpy()
    return [row.tobytes() for row in rows]


class SyntheticDataModule(L.LightningDataModule):
    """Base of the synthetic tasks: fixed seeded val / test / train sets, each disjoint from the ones drawn before it.

    A task defines `check` (raise on impossible settings) and `_generate` (a batch of examples from a random stream)
    and registers itself with `@register_task(name)`. Validation and test are drawn at the training length and
    distribution; sweeps over length and depth belong to `seqmix evaluate`, which calls `generate` directly.
    A task whose random streams are not torch generators (MQAR's NumPy ones) overrides `split_rng`, `task_rng`,
    `shuffle_seed` and, if they take fewer seeds, `check_seed`.

    A task's `__init__` declares only its own options and its defaults for seq_len and vocab_size, takes
    `**kwargs: Any` for the options shared here (batch_size, num_train, num_val, num_test, seed, num_workers) and
    passes them on by name: `super().__init__(seq_len, vocab_size, **kwargs)`, after setting what its `check`
    reads; a task built on another passes on the same way (MultiNeedle only changes num_needles' default).
    jsonargparse resolves those `**kwargs` to this signature, so the CLI lists and takes every option with its
    default here, and `save_hyperparameters` below records every option of every class in the chain."""

    task_name: ClassVar[str] = ""
    """The name the task is registered under (set by `@register_task`)."""
    has_depth: ClassVar[bool] = False
    """Whether the task places something at a controllable depth (then `generate` accepts depth)."""
    chunk_size: ClassVar[int] = 1024
    """Examples per `_generate` call: bounds the temporaries at long lengths (part of the task's random stream)."""
    max_rounds: ClassVar[int] = 50
    """Redraws allowed for a split whose examples keep landing in an earlier split."""
    message_prefix: ClassVar[str] = ""
    """Put before the name of a bad shared option in its error message (MQAR's messages all start "MQAR: ")."""

    def __init__(
        self,
        seq_len: int,
        vocab_size: int,
        batch_size: int = 32,
        num_train: int = 10_000,
        num_val: int = 500,
        num_test: int = 500,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        p = self.message_prefix
        self.seq_len = check_int(f"{p}seq_len", seq_len)
        self.vocab_size = check_int(f"{p}vocab_size", vocab_size)
        self.batch_size = check_int(f"{p}batch_size", batch_size)
        self.sizes = {"val": check_int(f"{p}num_val", num_val), "test": check_int(f"{p}num_test", num_test),
                      "train": check_int(f"{p}num_train", num_train)}  # in drawing order: held-out splits first
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.num_workers = check_int(f"{p}num_workers", num_workers, minimum=0)
        self.seed = self.check_seed(seed)
        self.datasets: dict[str, TokenDataset] = {}
        self.save_hyperparameters()
        self.record_class_path()

    def record_class_path(self) -> None:
        """Name the class in the hyperparameters the way LightningCLI does, so a checkpoint tells its task."""
        self.hparams["_class_path"] = class_path(type(self))

    def check_seed(self, seed: int) -> int:
        """Return seed if the task's random streams can be seeded with it (torch generators: any integer), else raise."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{self.message_prefix}seed must be an integer, got {seed!r}")
        return seed

    @abstractmethod
    def check(self, seq_len: int) -> None:
        """Raise a ValueError naming the bad value if this task cannot be built at seq_len."""

    @abstractmethod
    def _generate(self, n: int, seq_len: int, depth: float | None, rng: Any) -> dict[str, Tensor]:
        """n examples of length seq_len (already checked), drawn from the task's random stream `rng`."""

    def split_rng(self, split: str) -> Any:
        """The random stream a split is drawn from (each split its own, fixed by the seed)."""
        return seeded_generator(self.seed, split)

    def task_rng(self, generator: torch.Generator) -> Any:
        """The task's random stream for a torch generator given to `generate` (here: that generator)."""
        return generator

    @property
    def shuffle_seed(self) -> int:
        """Seed of the training order (combined with the epoch by the sampler)."""
        return seeded_generator(self.seed, "shuffle").initial_seed()

    def generate(
        self, n: int, seq_len: int | None = None, depth: float | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """n examples {"input_ids", "labels"} (int64, (n, seq_len)) drawn from `generator` (default: a fixed stream of
        the seed); depth (a fraction in [0, 1], None = random) only for tasks that place something."""
        check_int("n", n)
        seq_len = self.seq_len if seq_len is None else check_int("seq_len", seq_len)
        depth = check_depth(depth)
        if depth is not None and not self.has_depth:
            raise ValueError(f"{type(self).__name__} has no depth to control; leave depth=None")
        self.check(seq_len)
        generator = generator if generator is not None else seeded_generator(self.seed, "generate")
        return self._draw(n, seq_len, depth, self.task_rng(generator))

    def _draw(self, n: int, seq_len: int, depth: float | None, rng: Any) -> dict[str, Tensor]:
        """n examples from `rng`, generated `chunk_size` at a time."""
        parts = [self._generate(min(self.chunk_size, n - i), seq_len, depth, rng) for i in range(0, n, self.chunk_size)]
        return {key: torch.cat([p[key] for p in parts]) for key in ("input_ids", "labels")}

    def setup(self, stage: str | None = None) -> None:
        """Draw the three splits once, val then test then train, each from its own stream minus the earlier ones."""
        if self.datasets:
            return
        self.check(self.seq_len)
        earlier: set[bytes] = set()
        for split, wanted in self.sizes.items():
            rng, kept, have = self.split_rng(split), [], 0
            for _ in range(self.max_rounds):
                batch = self._draw(wanted - have, self.seq_len, None, rng)
                keep = torch.tensor([key not in earlier for key in row_keys(batch)], dtype=torch.bool)
                kept.append({k: v[keep] for k, v in batch.items()})
                have += int(keep.sum())
                if have == wanted:
                    break
            else:
                word = "training" if split == "train" else split
                raise DataError(
                    f"{type(self).__name__}: cannot draw {wanted} {word} examples distinct from the earlier splits "
                    f"(could only draw {have} of {wanted} {split} examples in {self.max_rounds} rounds); the task "
                    f"has too few distinct examples ({self.describe()}): make it larger or ask for fewer examples"
                )
            data = {k: torch.cat([p[k] for p in kept]) for k in ("input_ids", "labels")}
            self.datasets[split] = TokenDataset(data["input_ids"], data["labels"])
            if split != "train":
                earlier.update(row_keys(data))

    def describe(self) -> str:
        """The settings that bound how many distinct examples the task has (for error messages)."""
        return f"seq_len={self.seq_len}, vocab_size={self.vocab_size}"

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
