"""Early, explicit checks of kernel inputs (gated linear attention, delta rule, Mamba-2's SSD), shared by every form."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

R = TypeVar("R")


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def outside_autocast(fn: Callable[..., R]) -> Callable[..., R]:
    """Run a recurrence with autocast off, so that a bf16 autocast region cannot downcast its fp32 matmuls."""

    @functools.wraps(fn)
    def wrapper(q: Tensor, *args, **kwargs):
        device = q.device.type
        if not torch.amp.is_autocast_available(device):
            return fn(q, *args, **kwargs)
        with torch.autocast(device, enabled=False):
            return fn(q, *args, **kwargs)

    return wrapper


def compute_dtype(t: Tensor) -> torch.dtype:
    """The dtype a linear recurrence accumulates in: fp32, or the input's when it is wider (float64)."""
    return torch.promote_types(t.dtype, torch.float32)


def check_recurrence_inputs(
    fn: str,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    beta: Tensor | None = None,
    log_decay: Tensor | None = None,
    state: Tensor | None = None,
    chunk_size: int | None = None,
    per_channel_decay: bool = True,
) -> None:
    """Raise a one-line ValueError naming the bad input of a (B, H, L, d) linear recurrence and what would be valid."""
    if q.dim() != 4:
        raise ValueError(f"{fn}: q must have shape (batch, heads, seqlen, dk); got {_shape(q)}")
    b, h, length, dk = q.shape
    if not q.is_floating_point():
        raise ValueError(f"{fn}: q must be a floating-point tensor; got {q.dtype}")
    if _shape(k) != (b, h, length, dk):
        raise ValueError(f"{fn}: k must have shape (batch, heads, seqlen, dk) = {(b, h, length, dk)} like q; got {_shape(k)}")
    if v.dim() != 4 or _shape(v)[:3] != (b, h, length):
        raise ValueError(f"{fn}: v must have shape (batch, heads, seqlen, dv) = {(b, h, length)} + (dv,); got {_shape(v)}")
    if beta is not None and _shape(beta) != (b, h, length):
        raise ValueError(f"{fn}: beta must have shape (batch, heads, seqlen) = {(b, h, length)}; got {_shape(beta)}")
    if log_decay is not None:
        shapes = [(b, h, length)] + ([(b, h, length, dk)] if per_channel_decay else [])
        if _shape(log_decay) not in shapes:
            valid = " or ".join(map(str, shapes))
            raise ValueError(f"{fn}: log_decay must have shape {valid}; got {_shape(log_decay)}")
        top = log_decay.detach().max() if log_decay.numel() else None
        if top is not None and not top <= 0:  # also catches NaN
            raise ValueError(
                f"{fn}: log_decay must be <= 0 (a decay exp(log_decay) in (0, 1]); got a maximum of {top.item():g}"
            )
    if state is not None and _shape(state) != (b, h, dk, v.shape[-1]):
        raise ValueError(
            f"{fn}: state must have shape (batch, heads, dk, dv) = {(b, h, dk, v.shape[-1])}; got {_shape(state)}"
        )
    _check_chunk_and_device(fn, chunk_size, {"q": q, "k": k, "v": v, "beta": beta, "log_decay": log_decay, "state": state})


def check_ssd_inputs(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor | None = None, chunk_size: int | None = None
) -> None:
    """Raise a one-line ValueError naming the bad input of Mamba-2's SSD and what would be valid."""
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"ssd: x must be a floating-point (batch, heads, seqlen, headdim) tensor; got {_shape(x)} {x.dtype}")
    b, h, length, p = x.shape
    if _shape(dt) != (b, h, length):
        raise ValueError(f"ssd: dt must have shape (batch, heads, seqlen) = {(b, h, length)}; got {_shape(dt)}")
    if _shape(A) != (h,):
        raise ValueError(f"ssd: A must have shape (heads,) = ({h},); got {_shape(A)}")
    if B.dim() != 4 or _shape(B)[::2] != (b, length) or B.shape[1] < 1 or h % B.shape[1]:
        raise ValueError(
            f"ssd: B must have shape (batch, groups, seqlen, d_state) = ({b}, G, {length}, N) with G dividing "
            f"heads={h}; got {_shape(B)}"
        )
    if _shape(C) != _shape(B):
        raise ValueError(f"ssd: C must have B's shape {_shape(B)}; got {_shape(C)}")
    if state is not None and _shape(state) != (b, h, B.shape[-1], p):
        raise ValueError(
            f"ssd: state must have shape (batch, heads, d_state, headdim) = {(b, h, B.shape[-1], p)}; got {_shape(state)}"
        )
    if A.numel() and not A.detach().max() <= 0:  # also catches NaN
        raise ValueError(f"ssd: A must be <= 0 (a decay exp(dt A) in (0, 1]); got a maximum of {A.max().item():g}")
    if dt.numel() and not dt.detach().min() >= 0:
        raise ValueError(f"ssd: dt must be >= 0 (discretised, e.g. softplus); got a minimum of {dt.min().item():g}")
    _check_chunk_and_device("ssd", chunk_size, {"x": x, "dt": dt, "A": A, "B": B, "C": C, "state": state})


def _check_chunk_and_device(fn: str, chunk_size: int | None, tensors: dict[str, Tensor | None]) -> None:
    """A chunked kernel's chunk_size is a positive int or None, and its input tensors share one device."""
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{fn}: chunk_size must be a positive integer or None; got {chunk_size!r}")
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"{fn}: all inputs must be on one device; got {listing}")
