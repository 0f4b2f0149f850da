"""Random inputs for the linear-recurrence kernels (gated linear attention, delta rule) and a relative-error helper."""

from __future__ import annotations

import torch
from torch import Tensor

DECAYS = (None, "head", "channel")  # no decay, one log decay per (head, step), one per (head, step, key channel)


def rel_err(actual: Tensor, expected: Tensor) -> float:
    """Norm-wise relative error ||actual - expected|| / ||expected||.

    The scale is at least 0.1 per element (RMS): the inputs are O(1), and where a result nearly cancels or is zero
    (a tiny problem, dk = dv = 1; the decay's gradient when the state is still zero) no fp32 evaluation order, the
    reference's included, is relatively exact; there the check becomes an absolute 1e-6 per element, a few fp32
    roundings of the O(1) terms that cancelled.
    """
    floor = 0.1 * expected.numel() ** 0.5
    scale = max(expected.double().norm().item(), floor)
    return (actual.double() - expected.double()).norm().item() / scale


def recurrence_inputs(
    b: int, h: int, length: int, dk: int, dv: int, decay: str | None, *, seed: int = 0, start_state: bool = True,
    beta: bool = False, normalize_k: bool = False, dtype: torch.dtype = torch.float32, decay_scale: float = 1.0,
) -> dict[str, Tensor | None]:
    """q, k, v, optional beta in (0, 1), log_decay <= 0 of the requested kind, and an optional nonzero start state."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    k = r(b, h, length, dk)
    if normalize_k:  # the delta rule is a contraction only for beta * ||k||^2 <= 2
        k = torch.nn.functional.normalize(k, dim=-1)
    shapes = {None: None, "head": (b, h, length), "channel": (b, h, length, dk)}
    log_decay = None if decay is None else -torch.rand(*shapes[decay], generator=g, dtype=torch.float64) * decay_scale
    ins = {
        "q": r(b, h, length, dk),
        "k": k,
        "v": r(b, h, length, dv),
        "beta": torch.rand(b, h, length, generator=g, dtype=torch.float64) if beta else None,
        "log_decay": log_decay,
        "state": r(b, h, dk, dv) if start_state else None,
    }
    return {name: None if t is None else t.to(dtype) for name, t in ins.items()}


def leaves(ins: dict[str, Tensor | None]) -> dict[str, Tensor | None]:
    """Fresh copies that require grad, so two forms can be differentiated independently."""
    return {n: None if t is None else t.detach().clone().requires_grad_() for n, t in ins.items()}
