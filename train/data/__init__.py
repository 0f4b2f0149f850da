"""Data modules for seqmix, and the batch contract every one of them follows.

The contract (every `LightningDataModule` used with `seqmix.train.module.LMTask` and the `seqmix` CLI):

- Each batch is a dict ``{"input_ids": LongTensor (B, L), "labels": LongTensor (B, L)}``.
- Labels are already shifted: ``labels[b, t]`` is the token the model must predict after reading
  ``input_ids[b, : t + 1]``; ``-100`` (``IGNORE_INDEX``) marks positions that carry no loss. For plain language
  modelling that is ``input_ids = tokens[:-1]``, ``labels = tokens[1:]``; a synthetic task labels only its answers.
- The data module exposes ``vocab_size`` (an int attribute, set in ``__init__``): every token id in ``input_ids`` and
  every supervised label is below it. The CLI links it to the model (``data.vocab_size -> model.model.vocab_size``).
- Optional: several validation / test dataloaders may be returned; metrics are then suffixed per dataloader with
  the names in ``val_dataloader_names`` / ``test_dataloader_names`` (lists of str) if the module has them, else
  ``dl0``, ``dl1``, ... (``val/acc/<name>``).
"""

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
