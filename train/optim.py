"""LMTask's optimiser: AdamW settings checked early, parameter groups (no decay on norms, biases, A_log, D) and the
warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from seqmix import archs

from .checks import check_int


def check_optimizer_args(
    lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.95), warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> None:
    """Raise a ValueError naming the first bad AdamW / schedule setting of LMTask."""
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    check_int("warmup_steps", warmup_steps, minimum=0)
    if not 0 <= min_lr_ratio <= 1:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")


def lr_factor(step: int, warmup_steps: int, total_steps: float, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step `step`: linear warmup to 1, then cosine down to min_lr_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not math.isfinite(total_steps):
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1.0, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decayed weights, and the exempt ones (archs.no_weight_decay: norms, biases, A_log, D); with names."""
    decay: dict[str, nn.Parameter] = {}
    exempt: dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            (exempt if archs.no_weight_decay(name, p) else decay)[name] = p
    return [
        {"params": list(decay.values()), "names": list(decay), "weight_decay": weight_decay},
        {"params": list(exempt.values()), "names": list(exempt), "weight_decay": 0.0},
    ]
