"""Needle in a haystack (passkey retrieval): "key -> value" needles hidden at a chosen depth in filler, queried at the end.

Vocabulary: 0 = needle marker, 1 = query marker, then `num_keys` key tokens, `num_values` value tokens, and every
remaining id is filler. One example, as the full token sequence (the model reads all but its last token):

    filler ... [NEEDLE key v_1 .. v_m] ... filler   [QUERY key v_1 .. v_m]
    <------------- haystack (H tokens) ---------->  <- one block per query ->

The queried needle starts at index round(depth * (H - needle_len)), where needle_len = m + 2 and
H = seq_len - query_len, query_len being the query blocks' tokens inside the input (their total minus the last answer
token, which is only a label). So depth 0 puts the needle first and depth 1 right before the query. Labels sit only
on the answer tokens v_1 .. v_m of each query (teacher-forced). Other needles (multi-needle) are distractors with
distinct keys at random, non-overlapping places.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from .synthetic import SyntheticDataModule, check_int, place, shift, uniform
from .tasks import register_task

NEEDLE, QUERY = 0, 1
QUERY_MODES = ("one", "all")


@register_task("needle")
class NeedleDataModule(SyntheticDataModule):
    """Passkey retrieval at a controllable depth; `num_needles` > 1 makes it multi-needle (one or all queried)."""

    has_depth: ClassVar[bool] = True

    def __init__(
        self,
        seq_len: int = 256,
        vocab_size: int = 64,
        num_keys: int = 16,
        num_values: int = 16,
        value_len: int = 1,
        num_needles: int = 1,
        query: str = "one",
        **kwargs: Any,
    ):
        self.num_keys = check_int("num_keys", num_keys)
        self.num_values = check_int("num_values", num_values, minimum=2)
        self.value_len = check_int("value_len", value_len)
        self.num_needles = check_int("num_needles", num_needles)
        if query not in QUERY_MODES:
            raise ValueError(f"query must be one of {', '.join(QUERY_MODES)}, got {query!r}")
        self.query = query
        if num_needles > num_keys:
            raise ValueError(f"num_needles={num_needles} needs as many distinct keys, but num_keys={num_keys}")
        need = 2 + num_keys + num_values + 1
        if vocab_size < need:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: 2 markers + num_keys={num_keys} + num_values={num_values} "
                f"+ at least 1 filler token need vocab_size >= {need}"
            )
        super().__init__(seq_len, vocab_size, **kwargs)
        self.check(seq_len)

    @property
    def chance_accuracy(self) -> float:
        """Per-token accuracy of guessing uniformly among the values."""
        return 1.0 / self.num_values

    @property
    def needle_len(self) -> int:
        """Tokens of one needle: marker, key, value."""
        return 2 + self.value_len

    @property
    def num_queries(self) -> int:
        """How many needles are asked for at the end."""
        return self.num_needles if self.query == "all" else 1

    @property
    def query_len(self) -> int:
        """Tokens the query blocks occupy inside the input (the last answer token is only a label)."""
        return self.num_queries * (2 + self.value_len) - 1

    def haystack_len(self, seq_len: int) -> int:
        """Tokens before the query: filler plus every needle."""
        return seq_len - self.query_len

    def needle_start(self, seq_len: int, depth: float) -> int:
        """Index of the queried needle's marker at this depth: round(depth * (seq_len - needle_len - query_len))."""
        return round(depth * (self.haystack_len(seq_len) - self.needle_len))

    def check(self, seq_len: int) -> None:
        need = self.num_needles * self.needle_len + self.query_len
        if seq_len < need:
            raise ValueError(
                f"seq_len={seq_len} is too short for {self.num_needles} needle(s) of {self.needle_len} tokens and "
                f"{self.query_len} query tokens; need seq_len >= {need}"
            )

    def _generate(self, n: int, seq_len: int, depth: float | None, generator: torch.Generator) -> dict[str, Tensor]:
        k, m, nl, hay = self.num_needles, self.value_len, self.needle_len, self.haystack_len(seq_len)
        first_value, first_filler = 2 + self.num_keys, 2 + self.num_keys + self.num_values
        keys = torch.rand(n, self.num_keys, generator=generator).argsort(dim=1)[:, :k] + 2
        values = uniform(first_value, first_filler, (n, k, m), generator)
        needles = torch.cat([torch.full((n, k, 1), NEEDLE), keys[..., None], values], dim=2)  # (n, k, nl)

        sequence = uniform(first_filler, self.vocab_size, (n, seq_len + 1), generator)
        starts = self._needle_starts(n, hay, depth, generator)  # (n, k); needle 0 is the one at `depth`
        offsets = starts[..., None] + torch.arange(nl)
        sequence.scatter_(1, offsets.reshape(n, -1), needles.reshape(n, -1))

        if self.num_queries == 1:  # the needle at `depth` is the one asked for
            asked = torch.zeros(n, 1, dtype=torch.long)
        else:  # every needle, in random order
            asked = torch.rand(n, k, generator=generator).argsort(dim=1)
        queried = needles.gather(1, asked[..., None].expand(-1, -1, nl))[..., 1:]  # (n, queries, 1 + m)
        blocks = torch.cat([torch.full((n, asked.shape[1], 1), QUERY), queried], dim=2)
        sequence[:, hay:] = blocks.reshape(n, -1)
        answer = torch.zeros_like(sequence, dtype=torch.bool)
        answer[:, hay:] = (torch.arange(nl) >= 2).repeat(asked.shape[1])
        return shift(sequence, answer)

    def _needle_starts(self, n: int, hay: int, depth: float | None, generator: torch.Generator) -> Tensor:
        """Non-overlapping needle starts (n, num_needles) within the haystack; needle 0 at `depth` (random if None)."""
        nl, k = self.needle_len, self.num_needles
        first = place(depth, hay - nl, n, generator)
        if k == 1:
            return first[:, None]
        # The other needles go, uniformly, among the free filler slots on either side of needle 0: draw them as
        # k-1 units interleaved with the free filler tokens, then map back to positions.
        starts = torch.empty(n, k, dtype=torch.long)
        starts[:, 0] = first
        for i, left in enumerate(first.tolist()):
            right = hay - nl - left  # room after needle 0
            # how many others go left of needle 0: weighted by how many arrangements each choice allows
            counts = [j for j in range(k) if j * nl <= left and (k - 1 - j) * nl <= right]
            logw = torch.tensor([_log_arrangements(left, j, nl) + _log_arrangements(right, k - 1 - j, nl) for j in counts])
            j = counts[int(torch.multinomial((logw - logw.max()).exp(), 1, generator=generator))]
            others = _arrange(left, j, nl, generator) + [left + nl + s for s in _arrange(right, k - 1 - j, nl, generator)]
            starts[i, 1:] = torch.tensor(others, dtype=torch.long)
        return starts


def _log_arrangements(length: int, count: int, nl: int) -> float:
    """log of the number of ways to put `count` needles of nl tokens, without overlap, in `length` tokens."""
    units = length - count * (nl - 1)  # filler tokens plus needles, a needle counting as one unit
    return math.lgamma(units + 1) - math.lgamma(count + 1) - math.lgamma(units - count + 1)


def _arrange(length: int, count: int, nl: int, generator: torch.Generator) -> list[int]:
    """Starts of `count` needles of nl tokens put uniformly at random, without overlap, in `length` tokens."""
    units = length - count * (nl - 1)
    chosen = torch.randperm(units, generator=generator)[:count].sort().values.tolist()
    return [u + r * (nl - 1) for r, u in enumerate(chosen)]  # r needles before it each add nl - 1 tokens


@register_task("multi_needle")
class MultiNeedleDataModule(NeedleDataModule):
    """Several needles with distinct keys; `query="one"` asks the one at `depth`, `"all"` asks every needle."""

    def __init__(self, num_needles: int = 4, **kwargs: Any):
        super().__init__(num_needles=num_needles, **kwargs)
