"""Multi-query associative recall (MQAR) with Zoology's generator semantics, as a LightningDataModule.

An example of length L: a block of ``num_kv_pairs`` key-value pairs ``k1 v1 k2 v2 ...`` (distinct keys from the first
half of the vocabulary, excluding 0; distinct values from the second half), then the query region: every key once,
in random order, at even offsets drawn without replacement with probability proportional to ``a * i**(a - 1)``
(``power_a``; small a puts queries near the block), with 0 as filler elsewhere. The only supervised positions are
the queried keys, labelled with their value (labels are shifted, see the contract in ``seqmix.train.data``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .batch import IGNORE_INDEX
from .synthetic import SyntheticDataModule, check_int
from .tasks import register_task

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
"""Each split draws from its own random stream of the seed: np.random.default_rng([seed, stream])."""

_CHUNK = 4096  # examples generated per vectorised draw (bounds memory at large vocabularies)


def check_mqar(seq_len: int, num_kv_pairs: int, vocab_size: int, power_a: float) -> None:
    """Raise a ValueError naming the values if MQAR cannot be built with these settings."""
    for name, value in (("seq_len", seq_len), ("num_kv_pairs", num_kv_pairs), ("vocab_size", vocab_size)):
        check_int(f"MQAR: {name}", value)
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


@register_task("mqar")
class MQARDataModule(SyntheticDataModule):
    """Seeded MQAR train / val / test splits (mutually disjoint: no identical example in two splits).

    Its random streams are NumPy generators (``np.random.default_rng([seed, stream])``, one stream per split), and it
    keeps its own option names (``num_train_examples``, ...), as its configs and checkpoints have them."""

    chunk_size: ClassVar[int] = _CHUNK
    message_prefix: ClassVar[str] = "MQAR: "

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
        **kwargs: Any,
    ):
        """num_test_examples defaults to num_val_examples; `seed` (one of the base's options) fixes every split."""
        check_mqar(seq_len, num_kv_pairs, vocab_size, power_a)
        num_test_examples = num_val_examples if num_test_examples is None else num_test_examples
        for name, value in (("num_train_examples", num_train_examples), ("num_val_examples", num_val_examples),
                            ("num_test_examples", num_test_examples)):
            check_int(f"MQAR: {name}", value)
        self.num_kv_pairs, self.power_a = num_kv_pairs, power_a
        super().__init__(seq_len, vocab_size, batch_size=batch_size, num_train=num_train_examples,
                         num_val=num_val_examples, num_test=num_test_examples, **kwargs)
        # record MQAR's own options first, then the rest of the base's, but not the sizes under the base's names
        # (and, as before, no _class_path: MQARDataModule(**dm.hparams) rebuilds it)
        recorded = dict(self.hparams)
        self.hparams.clear()
        self.save_hyperparameters()
        self.hparams.update({k: v for k, v in recorded.items() if k not in ("num_train", "num_val", "num_test", "_class_path")})

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of guessing uniformly among the values."""
        return 1.0 / (self.vocab_size - self.vocab_size // 2)

    def check_seed(self, seed: int) -> int:
        return check_int("MQAR: seed", seed, minimum=0)  # NumPy generators take no negative seed

    def check(self, seq_len: int) -> None:
        check_mqar(seq_len, self.num_kv_pairs, self.vocab_size, self.power_a)

    def describe(self) -> str:
        return f"vocab_size={self.vocab_size}, seq_len={self.seq_len}, num_kv_pairs={self.num_kv_pairs}"

    def split_rng(self, split: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLIT_STREAMS[split]])

    def task_rng(self, generator: torch.Generator) -> np.random.Generator:
        """A NumPy stream seeded by one draw from `generator` (so successive calls differ)."""
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))

    @property
    def shuffle_seed(self) -> int:
        return self.seed

    def _generate(self, n: int, seq_len: int, depth: float | None, rng: np.random.Generator) -> dict[str, Tensor]:
        inputs, labels = generate_mqar(n, seq_len, self.num_kv_pairs, self.vocab_size, self.power_a, rng)
        return {"input_ids": inputs, "labels": labels}
