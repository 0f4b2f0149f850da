"""Shared machinery of the seeded token tasks: one base data module on token rows, and the helpers tasks draw with."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..checks import check_int
from .batch import IGNORE_INDEX, DataError, TokenDataset
from .splits import SeededSplitsDataModule, seeded_generator


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


class SyntheticDataModule(SeededSplitsDataModule):
    """Base of the token tasks: seeded disjoint splits (`SeededSplitsDataModule`) of token rows at one seq_len.

    A task defines `check` (raise on impossible settings) and `_generate` (a batch of examples from a random stream)
    and registers itself with `@register_task(name)`. Validation and test are drawn at the training length and
    distribution; sweeps over length and depth belong to `seqmix evaluate`, which calls `generate` directly.
    A task whose random streams are not torch generators (MQAR's NumPy ones) overrides `split_rng`, `task_rng`,
    `shuffle_seed` and, if they take fewer seeds, `check_seed`.

    A task's `__init__` declares only its own options and its defaults for seq_len and vocab_size, takes
    `**kwargs: Any` for the shared options of the base (batch_size, num_train, num_val, num_test, seed, num_workers)
    and passes them on by name: `super().__init__(seq_len, vocab_size, **kwargs)`, after setting what its `check`
    reads; a task built on another passes on the same way (MultiNeedle only changes num_needles' default)."""

    has_depth: ClassVar[bool] = False
    """Whether the task places something at a controllable depth (then `generate` accepts depth)."""
    chunk_size: ClassVar[int] = 1024
    """Examples per `_generate` call: bounds the temporaries at long lengths (part of the task's random stream)."""

    def __init__(self, seq_len: int, vocab_size: int, **kwargs: Any):
        p = self.message_prefix
        self.seq_len = check_int(f"{p}seq_len", seq_len)
        self.vocab_size = check_int(f"{p}vocab_size", vocab_size)
        super().__init__(**kwargs)

    @abstractmethod
    def check(self, seq_len: int) -> None:
        """Raise a ValueError naming the bad value if this task cannot be built at seq_len."""

    @abstractmethod
    def _generate(self, n: int, seq_len: int, depth: float | None, rng: Any) -> dict[str, Tensor]:
        """n examples of length seq_len (already checked), drawn from the task's random stream `rng`."""

    def task_rng(self, generator: torch.Generator) -> Any:
        """The task's random stream for a torch generator given to `generate` (here: that generator)."""
        return generator

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

    def split_examples(self, n: int, rng: Any) -> dict[str, Tensor]:
        self.check(self.seq_len)
        return self._draw(n, self.seq_len, None, rng)

    def example_keys(self, batch: dict[str, Tensor]) -> list[bytes]:
        return row_keys(batch)

    def make_dataset(self, batch: dict[str, Tensor]) -> TokenDataset:
        return TokenDataset(batch["input_ids"], batch["labels"])

    def overlap_error(self, split: str, wanted: int, have: int) -> DataError:
        word = "training" if split == "train" else split
        return DataError(
            f"{type(self).__name__}: cannot draw {wanted} {word} examples distinct from the earlier splits "
            f"(could only draw {have} of {wanted} {split} examples in {self.max_rounds} rounds); the task "
            f"has too few distinct examples ({self.describe()}): make it larger or ask for fewer examples"
        )

    def describe(self) -> str:
        """The settings that bound how many distinct examples the task has (for error messages)."""
        return f"seq_len={self.seq_len}, vocab_size={self.vocab_size}"
