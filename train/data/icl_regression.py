"""In-context linear regression (von Oswald et al. 2023): learn w from N pairs in the context, predict at a query.

One example (a task): w ~ N(0, I_d); x_1 .. x_N, x_q ~ U(-x_range, x_range)^d; y = w.x (+ N(0, noise_std^2)) for
the context and the query alike. Tokens are real (d+1)-vectors, the paper's e_i = (x_i, y_i), then the query
(x_q, 0):

    inputs  (N+1, d+1):  [x_1 y_1] [x_2 y_2] ... [x_N y_N] [x_q 0]
    target  ():          y_q

Batches are ``{"inputs": float32 (B, N+1, d+1), "targets": float32 (B,)}``; the model predicts at the last position.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..checks import check_int
from .batch import DataError
from .splits import SeededSplitsDataModule, seeded_generator
from .tasks import register_task


class RegressionDataset(Dataset):
    """In-memory tasks: row i is ``{"inputs": inputs[i] (N+1, d+1), "targets": targets[i] ()}``."""

    def __init__(self, inputs: Tensor, targets: Tensor):
        if inputs.ndim != 3 or targets.shape != inputs.shape[:1]:
            raise ValueError(f"inputs must be (n, L, D) and targets (n,); got {tuple(inputs.shape)} and "
                             f"{tuple(targets.shape)}")
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"inputs": self.inputs[i], "targets": self.targets[i]}


def _check_real(name: str, value: Any, low: float, strict: bool) -> float:
    """Return value as a float if it is a finite number > low (>= low unless strict), else raise naming it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}")
    return float(value)


@register_task("icl_regression")
class ICLRegressionDataModule(SeededSplitsDataModule):
    """Seeded in-context linear regression: disjoint val / test / train tasks, fresh tasks at any N from `generate`.

    Its options are its own plus the base's shared ones (batch_size defaults to 64 here), passed on through `**kwargs`."""

    has_depth: ClassVar[bool] = False
    max_rounds: ClassVar[int] = 1
    """Real-valued tasks never repeat unless the splits' streams do: a repeated task is an error, not redrawn."""

    def __init__(
        self,
        dim: int = 10,
        num_context: int = 10,
        noise_std: float = 0.0,
        x_range: float = 1.0,
        batch_size: int = 64,
        **kwargs: Any,
    ):
        self.dim = check_int("dim", dim)
        self.num_context = check_int("num_context", num_context)
        self.noise_std = _check_real("noise_std", noise_std, 0.0, strict=False)
        self.x_range = _check_real("x_range", x_range, 0.0, strict=True)
        super().__init__(batch_size=batch_size, **kwargs)

    @property
    def token_dim(self) -> int:
        """Width of a token (x, y): d + 1 (the CLI links it to the model's input width)."""
        return self.dim + 1

    @property
    def seq_len(self) -> int:
        """Tokens per example at the training N: the context pairs and the query."""
        return self.num_context + 1

    @property
    def baseline_mse(self) -> float:
        """The mean squared error of predicting 0 (the prior mean): E[y_q^2] = d x_range^2 / 3 + noise_std^2."""
        return self.dim * self.x_range**2 / 3 + self.noise_std**2

    def generate(self, n: int, num_context: int | None = None, generator: torch.Generator | None = None
                 ) -> dict[str, Tensor]:
        """n tasks {"inputs" (n, N+1, d+1), "targets" (n,), "w" (n, d)} with N = num_context (default: the training
        N), drawn from `generator` (default: a fixed stream of the seed)."""
        check_int("n", n)
        num_context = self.num_context if num_context is None else check_int("num_context", num_context)
        generator = generator if generator is not None else seeded_generator(self.seed, "generate")
        w = torch.randn(n, self.dim, generator=generator)
        x = (2 * torch.rand(n, num_context + 1, self.dim, generator=generator) - 1) * self.x_range  # (n, N+1, d)
        y = torch.einsum("nld,nd->nl", x, w)  # (n, N+1)
        if self.noise_std:
            y = y + self.noise_std * torch.randn(y.shape, generator=generator)
        inputs = torch.cat([x, y[..., None]], dim=-1)  # (n, N+1, d+1)
        inputs[:, -1, -1] = 0.0  # the query's y is what is asked
        return {"inputs": inputs, "targets": y[:, -1].clone(), "w": w}

    def split_examples(self, n: int, rng: torch.Generator) -> dict[str, Tensor]:
        return self.generate(n, generator=rng)

    def example_keys(self, batch: dict[str, Tensor]) -> list[bytes]:
        return [row.numpy().tobytes() for row in batch["inputs"]]

    def make_dataset(self, batch: dict[str, Tensor]) -> RegressionDataset:
        return RegressionDataset(batch["inputs"], batch["targets"])

    def overlap_error(self, split: str, wanted: int, have: int) -> DataError:
        return DataError(f"{type(self).__name__}: the {split} split repeats a task of an earlier split; the splits' "
                         "random streams are not independent")
