"""Selective copying (Mamba paper): remember the data tokens scattered among noise, then write them out in order.

Vocabulary: 0 = noise (blank), 1 = copy marker, 2 .. vocab_size-1 = data tokens. One example of seq_len tokens:

    . . d1 . . . d2 . d3 . . . . dn .   COPY COPY ... COPY
    <---- context: seq_len - n ---->    <- n markers -->

The n data tokens sit at distinct random places in the context, in order. At the i-th marker the label is the i-th data
token (the markers are all the model sees there: no teacher forcing); every other label is ignored. Longer contexts
(for extrapolation) add noise, not data.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .batch import IGNORE_INDEX
from .synthetic import SyntheticDataModule, check_int, uniform
from .tasks import register_task

NOISE, COPY = 0, 1


@register_task("selective_copying")
class SelectiveCopyingDataModule(SyntheticDataModule):
    """Selective copying of `num_tokens` data tokens hidden in a noisy context."""

    def __init__(
        self,
        seq_len: int = 256,
        vocab_size: int = 16,
        num_tokens: int = 16,
        **kwargs: Any,
    ):
        self.num_tokens = check_int("num_tokens", num_tokens)
        if vocab_size < 4:
            raise ValueError(f"vocab_size={vocab_size} is too small: noise, marker and at least 2 data tokens need >= 4")
        super().__init__(seq_len, vocab_size, **kwargs)
        self.check(seq_len)

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of guessing uniformly among the data tokens."""
        return 1.0 / (self.vocab_size - 2)

    def check(self, seq_len: int) -> None:
        if seq_len < 2 * self.num_tokens:
            raise ValueError(
                f"seq_len={seq_len} is too short to hide num_tokens={self.num_tokens} data tokens and copy them out: "
                f"need seq_len >= {2 * self.num_tokens}"
            )

    def _generate(self, n: int, seq_len: int, depth: float | None, generator: torch.Generator) -> dict[str, Tensor]:
        k, context = self.num_tokens, seq_len - self.num_tokens
        data = uniform(2, self.vocab_size, (n, k), generator)
        where = torch.rand(n, context, generator=generator).topk(k, dim=1).indices.sort(dim=1).values
        input_ids = torch.full((n, seq_len), NOISE, dtype=torch.long)
        input_ids.scatter_(1, where, data)
        input_ids[:, context:] = COPY
        labels = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
        labels[:, context:] = data
        return {"input_ids": input_ids, "labels": labels}
