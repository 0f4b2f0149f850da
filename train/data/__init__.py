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

from . import copying, icl_regression, induction, mqar, needle, state_tracking  # noqa: E402, F401, I001  (importing registers the tasks)
from .batch import IGNORE_INDEX, DataError, TokenDataset
from .tasks import TASKS, get_task, register_task, task_name

__all__ = ["IGNORE_INDEX", "TASKS", "DataError", "TokenDataset", "get_task", "register_task", "task_name"]
