"""Multi-query associative recall (MQAR) with Zoology's generator semantics, as a LightningDataModule.

An example of length L: a block of ``num_kv_pairs`` key-value pairs ``k1 v1 k2 v2 ...`` (distinct keys from the first
half of the vocabulary, excluding 0; distinct values from the second half), then the query region: every key once,
in random order, at even offsets drawn without replacement with probability proportional to ``a * i**(a - 1)``
(``power_a``; small a puts queries near the block), with 0 as filler elsewhere. The only supervised positions are
the queried keys, labelled with their value (labels are shifted, see the contract in ``seqmix.train.data``).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from . import IGNORE_INDEX, DataError, TokenDataset
from .resumable import train_loader

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
"""Each split draws from its own random stream of the seed: np.random.default_rng([seed, stream])."""

_CHUNK = 4096  # examples generated per vectorised draw (bounds memory at large vocabularies)
_MAX_ROUNDS = 50  # redraws allowed when excluding examples already in another split


def check_mqar(seq_len: int, num_kv_pairs: int, vocab_size: int, power_a: float) -> None:
    """Raise a ValueError naming the values if MQAR cannot be built with these settings."""
    for name, value in (("seq_len", seq_len), ("num_kv_pairs", num_kv_pairs), ("vocab_size", vocab_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"MQAR: {name} must be a positive integer, got {value!r}")
    if vocab_size <= seq_len:
        raise ValueError(
            f"MQAR needs vocab_size > seq_len, got vocab_size={vocab_size} <= seq_len={seq_len}; "
            f"use vocab_size >= {seq_len + 1} or a shorter seq_len"
        )
    if 4 * num_kv_pairs > seq_len:
        raise ValueError(
            f"MQAR needs 4 * num_kv_pairs <= seq_len (the key-value block plus a query slot per key), got "
            f"num_kv_pairs={num_kv_pairs}, seq_len={seq_len} (4 * {num_kv_pairs} = {4 * num_kv_pairs}); "
            f"use num_kv_pairs <= {seq_len // 4} or seq_len >= {4 * num_kv_pairs}"
        )
    if not power_a > 0:
        raise ValueError(f"MQAR: power_a must be > 0 (query positions are drawn ∝ a * i**(a - 1)), got {power_a!r}")


def _distinct(rng: np.random.Generator, rows: int, low: int, high: int, k: int) -> np.ndarray:
    """k distinct integers from [low, high) per row, uniformly over k-subsets, in random order."""
    if k * k > high - low:  # dense: a random partial sort of the whole range
        picked = rng.random((rows, high - low)).argpartition(k - 1, axis=1)[:, :k] + low
        return rng.permuted(picked, axis=1)
    # sparse (the usual case, e.g. 32 keys of 4096): draw with replacement, redraw rows that repeat (<~ 50% do)
    picked = rng.integers(low, high, size=(rows, k))
    while True:
        s = np.sort(picked, axis=1)
        bad = (s[:, 1:] == s[:, :-1]).any(axis=1)
        if not bad.any():
            return picked
        picked[bad] = rng.integers(low, high, size=(int(bad.sum()), k))


def generate_mqar(
    num_examples: int, seq_len: int, num_kv_pairs: int, vocab_size: int, power_a: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw MQAR examples: (input_ids, labels), both (num_examples, seq_len) int64, labels -100 except at queries."""
    check_mqar(seq_len, num_kv_pairs, vocab_size, power_a)
    kv, half, context = num_kv_pairs, vocab_size // 2, 2 * num_kv_pairs
    space = (seq_len - context) // 2  # query slots: a key at even offsets, filler after it
    log_p = np.log(power_a) + (power_a - 1) * np.log(np.arange(1, space + 1))
    inputs = np.zeros((num_examples, seq_len), dtype=np.int64)
    labels = np.full((num_examples, seq_len), IGNORE_INDEX, dtype=np.int64)
    for start in range(0, num_examples, _CHUNK):
        rows = slice(start, min(start + _CHUNK, num_examples))
        m = rows.stop - rows.start
        keys = _distinct(rng, m, 1, half, kv)  # 0 is the filler token, never a key
        values = _distinct(rng, m, half, vocab_size, kv)
        # kv distinct slots drawn ∝ p without replacement: the top-kv of log p + Gumbel noise (Gumbel-top-k)
        slots = (log_p + rng.gumbel(size=(m, space))).argpartition(space - kv, axis=1)[:, space - kv :]
        query_pos = context + 2 * slots
        block = inputs[rows]
        block[:, 0:context:2], block[:, 1:context:2] = keys, values
        np.put_along_axis(block, query_pos, keys, axis=1)
        np.put_along_axis(labels[rows], query_pos, values, axis=1)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


class MQARDataModule(L.LightningDataModule):
    """Seeded MQAR train / val / test splits (mutually disjoint: no identical example in two splits)."""

    def __init__(
        self,
        vocab_size: int = 256,
        seq_len: int = 64,
        num_kv_pairs: int = 8,
        power_a: float = 0.01,
        num_train_examples: int = 20_000,
        num_val_examples: int = 1_000,
        num_test_examples: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ):
        """num_test_examples defaults to num_val_examples; `seed` fixes every split."""
        super().__init__()
        check_mqar(seq_len, num_kv_pairs, vocab_size, power_a)
        num_test_examples = num_val_examples if num_test_examples is None else num_test_examples
        counts = dict(num_train_examples=num_train_examples, num_val_examples=num_val_examples,
                      num_test_examples=num_test_examples, batch_size=batch_size)
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MQAR: {name} must be a positive integer, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"MQAR: seed must be a non-negative integer, got {seed!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"MQAR: num_workers must be a non-negative integer, got {num_workers!r}")
        self.save_hyperparameters()
        self.vocab_size = vocab_size
        self.seq_len, self.num_kv_pairs, self.power_a = seq_len, num_kv_pairs, power_a
        self.sizes = {"train": num_train_examples, "val": num_val_examples, "test": num_test_examples}
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.splits: dict[str, TokenDataset] = {}

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of guessing uniformly among the values."""
        return 1.0 / (self.vocab_size - self.vocab_size // 2)

    def _draw(self, split: str, exclude: set[bytes]) -> TokenDataset:
        """Draw `split` from its own stream, dropping any example whose inputs are in `exclude` (labels follow inputs)."""
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[split]])
        wanted, kept = self.sizes[split], []
        have = 0
        for _ in range(_MAX_ROUNDS):
            inputs, labels = generate_mqar(
                wanted - have, self.seq_len, self.num_kv_pairs, self.vocab_size, self.power_a, rng
            )
            rows = inputs.numpy()
            fresh = torch.tensor([row.tobytes() not in exclude for row in rows], dtype=torch.bool)
            kept.append((inputs[fresh], labels[fresh]))
            have += int(fresh.sum())
            if have == wanted:
                return TokenDataset(torch.cat([i for i, _ in kept]), torch.cat([lab for _, lab in kept]))
        raise DataError(
            f"MQAR: could only draw {have} of {wanted} {split} examples that are not in another split; the task "
            f"(vocab_size={self.vocab_size}, seq_len={self.seq_len}, num_kv_pairs={self.num_kv_pairs}) has too few "
            f"distinct examples; ask for fewer examples or a larger task"
        )

    def setup(self, stage: str | None = None) -> None:
        """Draw all three splits once: held-out splits first, then train without any held-out example."""
        if self.splits:
            return
        seen: set[bytes] = set()
        for split in ("val", "test", "train"):
            self.splits[split] = self._draw(split, seen)
            if split != "train":
                seen.update(row.tobytes() for row in self.splits[split].input_ids.numpy())

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        return DataLoader(self.splits[split], batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Shuffled anew each epoch (order seeded by `seed` and the epoch), resumable mid-epoch, sharded under DDP."""
        self.setup()
        return train_loader(self, self.splits["train"], self.batch_size, seed=self.seed, num_workers=self.num_workers,
                            persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
