"""Mamba-2's SSD, a scalar-decay state-space scan per head: on gated linear attention, or mamba_ssm's Triton kernel.

h_t = exp(dt_t A) h_{t-1} + dt_t B_t^T x_t (an (N, P) state per head), y_t = C_t h_t. x (batch, H, L, P); dt
(batch, H, L), already discretised (after softplus and any clamp); A (H,) <= 0; B and C (batch, G, L, N), each group
shared by H / G consecutive heads; state (batch, H, N, P). The D skip and the output gate stay with the caller.
Backends: `torch` and `fla` run `gated_linear_attention` (q <- C, k <- B, v <- dt x, log_decay <- dt A) on that
backend, `mamba_ssm` runs `mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined` (CUDA), and `auto` the first
of mamba_ssm, fla, torch that runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .fla_backend import resolve_recurrence_backend
from .gated_linear_attention import DEFAULT_CHUNK, gated_linear_attention, gla_step
from .optional import KERNEL_DTYPES, common_dtype, cuda_package
from .validate import check_ssd_inputs

SSD_BACKENDS = ("auto", "torch", "fla", "mamba_ssm")


def mamba_chunk_scan(device: torch.device) -> Callable:
    """mamba_ssm's `mamba_chunk_scan_combined` for tensors on `device`, or a RuntimeError saying what is missing."""
    module = cuda_package("ssd backend 'mamba_ssm'", "mamba-ssm", "mamba_ssm.ops.triton.ssd_combined",
                          "selective_scan_cuda", "fwd", device)
    return module.mamba_chunk_scan_combined


def resolve_ssd_backend(backend: str, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """The concrete SSD backend `backend` means on `device` for inputs in `dtype`: ValueError for an unknown name or a
    dtype mamba_ssm cannot take, RuntimeError when the backend asked for cannot run here."""
    if backend not in SSD_BACKENDS:
        raise ValueError(f"unknown ssd backend {backend!r}; choose one of {', '.join(SSD_BACKENDS)}")
    device = torch.device(device)
    if backend == "mamba_ssm" or (backend == "auto" and device.type == "cuda"):
        try:
            mamba_chunk_scan(device)
        except RuntimeError:
            if backend == "mamba_ssm":
                raise
        else:
            if dtype in KERNEL_DTYPES:
                return "mamba_ssm"
            if backend == "mamba_ssm":
                raise ValueError(f"ssd backend 'mamba_ssm' takes float16, bfloat16 or float32 inputs, not {dtype}")
        backend = "auto"
    return resolve_recurrence_backend(backend, device, dtype)


def gla_inputs(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The SSD as gated linear attention: q <- C, k <- B (per head), v <- dt x, log_decay <- dt A; (B, H, L, .)."""
    per_group = x.shape[1] // B.shape[1]
    q, k = C.repeat_interleave(per_group, dim=1), B.repeat_interleave(per_group, dim=1)  # (batch, H, L, N)
    return q, k, x * dt[..., None], dt * A[:, None]


def mamba_ssm_ssd(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor | None, chunk_size: int
                  ) -> tuple[Tensor, Tensor]:
    """The SSD on mamba_ssm's `mamba_chunk_scan_combined`: our (batch, H, L, .) tensors in, y (batch, H, L, P) in x's
    dtype and the final state (batch, H, N, P) in fp32 out."""
    dtype = common_dtype(x, B, C)
    x_, B_, C_ = (t.transpose(1, 2).to(dtype) for t in (x, B, C))  # (batch, L, H, P), (batch, L, G, N)
    # dt arrives discretised, and the caller adds D x and gates: no dt_bias, softplus, D or z inside
    y, final = mamba_chunk_scan(x.device)(
        x_, dt.transpose(1, 2).float(), A.float(), B_, C_, chunk_size, D=None, z=None, dt_bias=None,
        initial_states=None if state is None else state.transpose(-1, -2).float(), dt_softplus=False,
        return_final_states=True,
    )  # y (batch, L, H, P); states in the official (P, N) layout
    return y.transpose(1, 2).to(x.dtype), final.transpose(-1, -2).float()


def ssd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    state: Tensor | None = None,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """The SSD over a sequence from `state` (None: zeros): y (batch, H, L, P) in x's dtype and the final state
    (batch, H, N, P) in at least fp32. chunk_size: the tile of the torch and mamba_ssm backends (default 64)."""
    check_ssd_inputs(x, dt, A, B, C, state, chunk_size)
    name = resolve_ssd_backend(backend, x.device, common_dtype(x, B, C))
    if name == "mamba_ssm" and x.shape[2] > 0:
        return mamba_ssm_ssd(x, dt, A, B, C, state, chunk_size or DEFAULT_CHUNK)
    q, k, v, log_decay = gla_inputs(x, dt, A, B, C)
    name = "torch" if name == "mamba_ssm" else name  # an empty sequence: nothing to run, the state as given
    y, final = gated_linear_attention(q, k, v, log_decay, state, chunk_size, backend=name)
    return y.to(x.dtype), final


def ssd_step(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One token: x (batch, H, P), dt (batch, H), A (H,), B and C (batch, G, N), state (batch, H, N, P) -> y
    (batch, H, P) in the state's dtype, the new state."""
    q, k, v, log_decay = gla_inputs(x[:, :, None], dt[:, :, None], A, B[:, :, None], C[:, :, None])  # L = 1
    return gla_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], log_decay[:, :, 0], state)
