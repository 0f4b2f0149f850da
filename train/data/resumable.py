"""Training loaders that resume mid-epoch exactly and shard across processes like DistributedSampler.

`EpochSampler` fixes the order of epoch e as a function of (seed, e) alone, so nothing but the epoch and a position
needs saving; `ResumableLoader` counts how far into the epoch it has handed out batches and exposes that through
``state_dict`` / ``load_state_dict``, the protocol Lightning saves in checkpoints (``loops.fit_loop`` holds it), and
the one `seqmix.train.checkpoint.ResumeState` re-applies on resume. `train_loader` builds the pair for a data module, sharded
over the trainer's processes when it runs distributed (DDP).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..checks import check_int


class EpochSampler(DistributedSampler):
    """Example indices of one epoch: a seeded order split over `num_replicas` processes the DistributedSampler way.

    The global order of epoch e is drawn from ``torch.Generator().manual_seed(seed + e)``: a permutation of the
    dataset (``shuffle``; the same as a RandomSampler with that generator), ``range(len(dataset))`` (no shuffle), or
    `num_samples` draws with replacement (as RandomSampler(replacement=True)). It is padded by wrapping around to a
    multiple of `num_replicas`, and process `rank` takes every num_replicas-th index from `rank` on: with a per-process
    batch b, the processes' step-t batches together hold exactly the examples of step t of one process with batch
    b * num_replicas. ``start`` (a global position, a multiple of num_replicas) makes the next iteration begin there;
    it is used once. ``len`` is always the whole epoch's share of one process.
    """

    def __init__(
        self,
        dataset: Sized,
        seed: int,
        shuffle: bool = True,
        num_samples: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]
        check_int("num_samples", num_samples, optional=True)
        if len(dataset) < 1:
            raise ValueError("EpochSampler needs a non-empty dataset")
        self.draws = num_samples
        self.size = len(dataset) if num_samples is None else num_samples  # global examples per epoch, before padding
        self.num_samples = math.ceil(self.size / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.start = 0

    def global_order(self) -> list[int]:
        """Every process's indices of the current epoch, interleaved (padded to total_size)."""
        n = len(self.dataset)  # type: ignore[arg-type]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.draws is not None:
            order = torch.randint(n, (self.draws,), generator=generator).tolist()
        elif self.shuffle:
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        pad = self.total_size - len(order)
        return order + (order * math.ceil(pad / len(order)))[:pad] if pad else order

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.global_order()[start + self.rank : self.total_size : self.num_replicas])


class ResumableLoader(DataLoader):
    """A DataLoader that knows how many examples of the current epoch it has handed out, and can resume there.

    ``state_dict()`` is ``{"epoch", "position", "size", "seed"}`` with `position` a global count of examples (all
    processes together), so a run can resume on another number of processes. ``load_state_dict`` takes effect at the
    next epoch pass that is of the saved epoch; passes of other epochs start from their beginning. Iterating is lazy:
    the epoch and the resume position are read when the first batch is requested, not when ``iter()`` is called, so
    Lightning may call ``iter()`` before it restores a checkpoint or sets the epoch. Worker processes are seeded from
    (seed, epoch), never from the global RNG, so resuming does not shift the global random stream.
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, sampler: Any = None, **kwargs: Any):
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self._epoch: int | None = None
        self._position = 0
        self._pending: dict[str, Any] | None = None

    def _layout(self) -> tuple[int, int, int, int]:
        """(epoch, processes, global examples per epoch incl. padding, seed) of the sampler."""
        sampler = self.sampler
        replicas = int(getattr(sampler, "num_replicas", 1))
        total = int(getattr(sampler, "total_size", len(sampler)))  # type: ignore[arg-type]
        return int(getattr(sampler, "epoch", 0)), replicas, total, int(getattr(sampler, "seed", 0))

    def _size(self) -> int:
        """Examples per epoch before padding: the same whatever the number of processes."""
        return int(getattr(self.sampler, "size", len(self.sampler)))  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        """Where the current epoch stands: its number and the global count of examples handed out in it."""
        epoch, _, _, seed = self._layout()
        return {"epoch": epoch if self._epoch is None else self._epoch, "position": self._position,
                "size": self._size(), "seed": seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume at `state_dict`'s position when its epoch is next iterated."""
        self._pending = dict(state_dict)

    def _start(self, epoch: int, replicas: int, seed: int) -> int:
        """The global position the pass of `epoch` starts at: the pending resume position, if it is for this epoch."""
        pending, self._pending = self._pending, None
        if not pending or pending.get("epoch") != epoch:
            return 0
        if (pending.get("size"), pending.get("seed")) != (self._size(), seed):
            rank_zero_warn(
                f"the training data changed since the checkpoint (examples per epoch {pending.get('size')} -> "
                f"{self._size()}, order seed {pending.get('seed')} -> {seed}); epoch {epoch} restarts from its first "
                "batch"
            )
            return 0
        position = int(pending.get("position", 0))
        if position % replicas:
            rank_zero_warn(
                f"resuming at example {position} of epoch {epoch} on {replicas} processes: not a multiple of "
                f"{replicas}; the last {position % replicas} example(s) before it are seen again"
            )
        return position - position % replicas

    def __iter__(self) -> Iterator[Any]:
        return self._epoch_batches()

    def _epoch_batches(self) -> Iterator[Any]:
        epoch, replicas, total, seed = self._layout()
        start = self._start(epoch, replicas, seed)
        self._epoch, self._position = epoch, start
        if self.generator is not None:
            self.generator.manual_seed(seed + epoch)  # worker seeds depend on the epoch only
        skip = 0
        if isinstance(self.sampler, EpochSampler):
            self.sampler.start = start
        elif start:  # some other sampler (e.g. Lightning's, with overfit_batches): replay and drop what was seen
            skip = start // (self.batch_size * replicas)
        step = (self.batch_size or 1) * replicas
        for i, batch in enumerate(super().__iter__()):
            if i < skip:
                continue
            self._position = min(self._position + step, total)
            yield batch


def process_layout(datamodule: L.LightningDataModule) -> tuple[int, int]:
    """(num_replicas, rank) of the trainer running `datamodule`: (world size, global rank) under DDP, else (1, 0)."""
    trainer = getattr(datamodule, "trainer", None)
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    if kwargs:
        return int(kwargs.get("num_replicas", 1)), int(kwargs.get("rank", 0))
    return 1, 0


def train_loader(
    datamodule: L.LightningDataModule,
    dataset: Dataset,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    num_samples: int | None = None,
    **kwargs: Any,
) -> ResumableLoader:
    """The resumable, shuffled (or, with `num_samples`, drawn with replacement) training loader of `datamodule`.

    `batch_size` is per process, as everywhere in Lightning: under DDP on N processes the global batch is N times it.
    """
    replicas, rank = process_layout(datamodule)
    sampler = EpochSampler(dataset, seed=seed, num_samples=num_samples, num_replicas=replicas, rank=rank)  # type: ignore[arg-type]
    return ResumableLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, **kwargs)
