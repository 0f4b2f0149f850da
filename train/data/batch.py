"""The batch contract's pieces: the ignored-label value, the data error and the in-memory dataset of examples."""

from __future__ import annotations

from torch import Tensor
from torch.utils.data import Dataset

IGNORE_INDEX = -100
"""The label value that marks an unsupervised position (torch's cross-entropy default)."""


class DataError(ValueError):
    """Data that cannot be used as configured (a missing, empty or binary file, too few tokens): one line to the user."""


class TokenDataset(Dataset):
    """In-memory examples following the batch contract: row i is ``{"input_ids": inputs[i], "labels": labels[i]}``."""

    def __init__(self, input_ids: Tensor, labels: Tensor):
        if input_ids.shape != labels.shape or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids and labels must both be (N, L); got {tuple(input_ids.shape)} and {tuple(labels.shape)}"
            )
        self.input_ids, self.labels = input_ids.long(), labels.long()

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}
