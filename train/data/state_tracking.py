"""State tracking (Merrill et al. 2024, "The Illusion of State"): the word problem of the symmetric group S_n.

The model reads a sequence of permutations of n elements, one token each, and must output their running composition
(the state of an n-object shuffle). S_5 is the paper's hard case (not solvable, so beyond fixed-depth circuits of
the TC^0 kind that attention and diagonal SSMs compute); S_2 is parity (Zoology's parity task). One example:

    g1 g2 ... gk QUERY          (seq_len = k + 1 tokens, k >= 2 elements)

Tokens 0 .. n!-1 are the elements of S_n in lexicographic order of their one-line form (0 = identity), QUERY = n!.
With `supervise="last"` only the QUERY position is labelled, with the composition gk ∘ ... ∘ g1 (g1 applied first);
with `supervise="all"` every position t is also labelled with the prefix composition gt ∘ ... ∘ g1 (Merrill et al.'s
training signal; the number of labels then grows with the length).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor

from ..checks import check_int
from .batch import IGNORE_INDEX
from .synthetic import SyntheticDataModule, uniform
from .tasks import register_task

SUPERVISE = ("last", "all")
MAX_DEGREE = 7  # 7! = 5040 elements; the composition table has (n!)^2 entries


def permutations(degree: int) -> Tensor:
    """The n! permutations of range(n) in lexicographic order, one per row (n!, n); row 0 is the identity."""
    return torch.tensor(list(itertools.permutations(range(degree))), dtype=torch.long)


def composition_table(perms: Tensor) -> Tensor:
    """table[a, b] = index of a ∘ b (apply b, then a): (a ∘ b)[i] = a[b[i]]."""
    count, degree = perms.shape
    weights = degree ** torch.arange(degree - 1, -1, -1)  # a permutation's one-line form read as a base-n number
    index_of = torch.full((degree**degree,), -1, dtype=torch.long)
    index_of[perms @ weights] = torch.arange(count)
    composed = perms[:, None, :].expand(-1, count, -1).gather(2, perms[None, :, :].expand(count, -1, -1))  # (n!, n!, n)
    return index_of[composed @ weights]


@register_task("permutation")
class PermutationDataModule(SyntheticDataModule):
    """The word problem of S_n (default S_5): compose a sequence of permutations, answer at the QUERY token."""

    def __init__(
        self,
        seq_len: int = 64,
        vocab_size: int | None = None,
        degree: int = 5,
        supervise: str = "last",
        **kwargs: Any,
    ):
        self.degree = check_int("degree", degree, minimum=2)
        if self.degree > MAX_DEGREE:
            elements = math.factorial(degree)
            raise ValueError(f"degree={degree} is too large: S_{degree} has {elements} elements; use 2 .. {MAX_DEGREE}")
        if supervise not in SUPERVISE:
            raise ValueError(f"supervise must be one of {', '.join(SUPERVISE)}, got {supervise!r}")
        self.supervise = supervise
        self.num_elements = math.factorial(self.degree)
        self.query = self.num_elements
        needed = self.num_elements + 1
        vocab_size = needed if vocab_size is None else vocab_size
        if isinstance(vocab_size, int) and not isinstance(vocab_size, bool) and vocab_size < needed:
            raise ValueError(f"vocab_size={vocab_size} is too small: the {self.num_elements} elements of S_{self.degree} "
                             f"and the query token need >= {needed}")
        super().__init__(seq_len, vocab_size, **kwargs)
        self.table = composition_table(permutations(self.degree))
        self.check(seq_len)

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of guessing uniformly among the group's elements (the answer is uniform over them)."""
        return 1.0 / self.num_elements

    def check(self, seq_len: int) -> None:
        if seq_len < 3:
            raise ValueError(f"seq_len={seq_len} is too short: a composition of at least 2 elements and the query token "
                             "need seq_len >= 3")

    def describe(self) -> str:
        return f"seq_len={self.seq_len}, degree={self.degree} ({self.num_elements} elements)"

    def _generate(self, n: int, seq_len: int, depth: float | None, generator: torch.Generator) -> dict[str, Tensor]:
        k = seq_len - 1
        elements = uniform(0, self.num_elements, (n, k), generator)
        prefix = torch.empty_like(elements)  # (n, k): prefix[:, t] = g_t ∘ ... ∘ g_1
        state = torch.zeros(n, dtype=torch.long)  # the identity
        for t in range(k):
            state = self.table[elements[:, t], state]
            prefix[:, t] = state
        input_ids = torch.cat([elements, torch.full((n, 1), self.query, dtype=torch.long)], dim=1)  # (n, seq_len)
        labels = torch.full((n, seq_len), IGNORE_INDEX, dtype=torch.long)
        labels[:, k] = state
        if self.supervise == "all":
            labels[:, :k] = prefix
        return {"input_ids": input_ids, "labels": labels}


@register_task("parity")
class ParityDataModule(PermutationDataModule):
    """Parity of a bit string (the word problem of S_2): tokens 0 and 1 are the bits, 2 the query; answer 0 or 1."""

    def __init__(self, **kwargs: Any):
        super().__init__(degree=2, **kwargs)
        self.hparams.pop("degree", None)  # may be collected from the parent's frame; parity's degree is not an option
        self.hparams["vocab_size"] = self.vocab_size
