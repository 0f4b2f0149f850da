"""Induction heads (Mamba paper): recall the token that followed a trigger's earlier occurrence.

Vocabulary: 0 = trigger, 1 .. vocab_size-1 = ordinary tokens. One example, as the full token sequence (the model reads
all but its last token):

    x x x ... TRIGGER target x x ... x TRIGGER target
              ^ index p                ^ index seq_len - 1 (the only supervised input position)

The trigger appears exactly twice in the input; its first occurrence is at p = round(depth * (seq_len - 3)) for a
fixed depth (0: first token, 1: as late as leaves room for the target), uniform over all such places otherwise.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from .synthetic import SyntheticDataModule, place, shift, uniform
from .tasks import register_task

TRIGGER = 0


@register_task("induction")
class InductionDataModule(SyntheticDataModule):
    """Induction heads: after the second trigger, predict what followed the first one."""

    has_depth: ClassVar[bool] = True

    def __init__(
        self,
        seq_len: int = 256,
        vocab_size: int = 16,
        **kwargs: Any,
    ):
        if vocab_size < 3:
            raise ValueError(f"vocab_size={vocab_size} is too small: a trigger and at least 2 ordinary tokens need >= 3")
        super().__init__(seq_len, vocab_size, **kwargs)
        self.check(seq_len)

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of guessing uniformly among the ordinary tokens."""
        return 1.0 / (self.vocab_size - 1)

    def check(self, seq_len: int) -> None:
        if seq_len < 3:
            raise ValueError(f"seq_len={seq_len} is too short: trigger, target and the final trigger need seq_len >= 3")

    def trigger_index(self, seq_len: int, depth: float) -> int:
        """Index of the first trigger at this depth."""
        return round(depth * (seq_len - 3))

    def _generate(self, n: int, seq_len: int, depth: float | None, generator: torch.Generator) -> dict[str, Tensor]:
        sequence = uniform(1, self.vocab_size, (n, seq_len + 1), generator)
        first = place(depth, seq_len - 3, n, generator)
        rows = torch.arange(n)
        sequence[rows, first] = TRIGGER
        sequence[:, seq_len - 1] = TRIGGER
        sequence[:, seq_len] = sequence[rows, first + 1]
        answer = torch.zeros_like(sequence, dtype=torch.bool)
        answer[:, seq_len] = True
        return shift(sequence, answer)
