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

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..checks import check_int
from .batch import DataError
from .resumable import train_loader
from .synthetic import seeded_generator
from .tasks import class_path, register_task

SPLITS = ("val", "test", "train")
"""Drawing order: the held-out splits first, each from its own stream."""


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
class ICLRegressionDataModule(L.LightningDataModule):
    """Seeded in-context linear regression: disjoint val / test / train tasks, fresh tasks at any N from `generate`."""

    has_depth: ClassVar[bool] = False

    def __init__(
        self,
        dim: int = 10,
        num_context: int = 10,
        noise_std: float = 0.0,
        x_range: float = 1.0,
        batch_size: int = 64,
        num_train: int = 10_000,
        num_val: int = 500,
        num_test: int = 500,
        seed: int = 0,
        num_workers: int = 0,
    ):
        super().__init__()
        self.dim = check_int("dim", dim)
        self.num_context = check_int("num_context", num_context)
        self.noise_std = _check_real("noise_std", noise_std, 0.0, strict=False)
        self.x_range = _check_real("x_range", x_range, 0.0, strict=True)
        self.batch_size = check_int("batch_size", batch_size)
        self.sizes = {"val": check_int("num_val", num_val), "test": check_int("num_test", num_test),
                      "train": check_int("num_train", num_train)}
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.datasets: dict[str, RegressionDataset] = {}
        self.save_hyperparameters()
        self.hparams["_class_path"] = class_path(type(self))  # a checkpoint tells its task, as the token tasks do

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

    def split_rng(self, split: str) -> torch.Generator:
        """The random stream a split is drawn from (each split its own, fixed by the seed)."""
        return seeded_generator(self.seed, split)

    def setup(self, stage: str | None = None) -> None:
        """Draw val, test, then train, each from its own stream; a task seen in an earlier split is an error."""
        if self.datasets:
            return
        earlier: set[bytes] = set()
        for split in SPLITS:
            batch = self.generate(self.sizes[split], generator=self.split_rng(split))
            keys = [row.numpy().tobytes() for row in batch["inputs"]]
            if earlier.intersection(keys):
                raise DataError(f"{type(self).__name__}: the {split} split repeats a task of an earlier split; the "
                                "splits' random streams are not independent")
            earlier.update(keys)
            self.datasets[split] = RegressionDataset(batch["inputs"], batch["targets"])

    def _loader(self, split: str) -> DataLoader:
        self.setup()
        return DataLoader(self.datasets[split], batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Shuffled anew each epoch (seeded), resumable mid-epoch, sharded under DDP."""
        self.setup()
        return train_loader(self, self.datasets["train"], self.batch_size,
                            seed=seeded_generator(self.seed, "shuffle").initial_seed(), num_workers=self.num_workers,
                            persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
