"""Shared machinery of the seeded synthetic tasks: a base data module with disjoint splits, seeding and checks."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from typing import ClassVar

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from . import IGNORE_INDEX, DataError, TokenDataset
from .resumable import train_loader

CHUNK = 1024  # examples generated per call: bounds the temporaries at long lengths


def seeded_generator(seed: int, *stream: object) -> torch.Generator:
    """A CPU generator whose seed is derived from (seed, *stream), so every split/purpose gets its own stream."""
    digest = hashlib.sha256("/".join(map(str, (seed, *stream))).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return value if it is an int >= minimum, else raise a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


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
    """Base of the synthetic tasks: fixed seeded train/val/test sets, train deduplicated against val and test.

    Subclasses define `check` (raise on impossible settings) and `_generate` (a batch of examples). Validation and
    test are drawn at the training length and distribution; sweeps over length and depth belong to `seqmix evaluate`,
    which calls `generate` directly."""

    has_depth: ClassVar[bool] = False
    """Whether the task places something at a controllable depth (then `generate` accepts depth)."""

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
        self.seq_len = check_int("seq_len", seq_len)
        self.vocab_size = check_int("vocab_size", vocab_size)
        self.batch_size = check_int("batch_size", batch_size)
        self.num_train = check_int("num_train", num_train)
        self.num_val = check_int("num_val", num_val)
        self.num_test = check_int("num_test", num_test)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.datasets: dict[str, TokenDataset] = {}
        self.save_hyperparameters()
        # Name the class the way LightningCLI does, so any checkpoint tells `seqmix evaluate` which task it learned.
        self.hparams["_class_path"] = f"{type(self).__module__}.{type(self).__qualname__}"

    @abstractmethod
    def check(self, seq_len: int) -> None:
        """Raise a ValueError naming the bad value if this task cannot be built at seq_len."""

    @abstractmethod
    def _generate(self, n: int, seq_len: int, depth: float | None, generator: torch.Generator) -> dict[str, Tensor]:
        """n examples of length seq_len (already checked)."""

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
        parts = [self._generate(min(CHUNK, n - i), seq_len, depth, generator) for i in range(0, n, CHUNK)]
        return {key: torch.cat([p[key] for p in parts]) for key in ("input_ids", "labels")}

    def setup(self, stage: str | None = None) -> None:
        """Draw the three splits once: val and test from their own streams, train from its own minus any overlap."""
        if self.datasets:
            return
        held_out: set[bytes] = set()
        for split, n in (("val", self.num_val), ("test", self.num_test)):
            batch = self.generate(n, generator=seeded_generator(self.seed, split))
            held_out.update(row_keys(batch))
            self.datasets[split] = TokenDataset(batch["input_ids"], batch["labels"])
        generator, kept, have = seeded_generator(self.seed, "train"), [], 0
        for _ in range(20):
            batch = self.generate(max(16, self.num_train - have), generator=generator)
            keep = torch.tensor([key not in held_out for key in row_keys(batch)])
            kept.append({k: v[keep] for k, v in batch.items()})
            have += int(keep.sum())
            if have >= self.num_train:
                break
        else:
            raise DataError(
                f"{type(self).__name__}: cannot draw {self.num_train} training examples distinct from the validation "
                f"and test sets (seq_len={self.seq_len}, vocab_size={self.vocab_size}); the task has too few distinct "
                "examples: raise seq_len or vocab_size, or lower num_val/num_test"
            )
        train = {k: torch.cat([p[k] for p in kept])[: self.num_train] for k in ("input_ids", "labels")}
        self.datasets["train"] = TokenDataset(train["input_ids"], train["labels"])

    def _loader(self, split: str) -> DataLoader:
        if not self.datasets:
            self.setup()
        return DataLoader(self.datasets[split], batch_size=self.batch_size, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        """Shuffled anew each epoch (from the seed's "shuffle" stream and the epoch), resumable mid-epoch, sharded
        under DDP."""
        if not self.datasets:
            self.setup()
        seed = seeded_generator(self.seed, "shuffle").initial_seed()
        return train_loader(self, self.datasets["train"], self.batch_size, seed=seed, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
