"""The language-modelling objective: next-token cross-entropy and accuracy over supervised positions."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .data import IGNORE_INDEX


def lm_loss_and_accuracy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """Mean next-token cross-entropy and argmax accuracy over supervised positions (labels != -100), and their count."""
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    mask = flat_labels != IGNORE_INDEX
    count = int(mask.sum())
    loss = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    correct = (flat_logits.argmax(-1) == flat_labels) & mask
    denom = max(count, 1)
    return loss / denom, correct.sum().float() / denom, count
