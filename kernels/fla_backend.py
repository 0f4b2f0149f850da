"""The linear recurrences' backends: which one runs, and flash-linear-attention's Triton kernels (fla-core) on our
semantics.

`resolve_recurrence_backend`: `torch` is our chunked form, `fla` fla's chunked kernels, `auto` fla on CUDA when
fla-core imports and its kernels take the inputs, else torch. `fla_gated_linear_attention` and `fla_delta_rule` take
the public kernels' arguments ((B, H, L, d), q unscaled, an optional start state) and call `chunk_simple_gla` (no
decay, or one per head and step), `chunk_gla` (one per key channel) or `chunk_gated_delta_rule` (the delta rule).
fla computes in the common dtype of q, k and v (bf16 inputs run its bf16 matmuls), with decays, beta and the state
in fp32; o comes back in q's dtype, the final state in fp32, as from the torch form.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from .optional import KERNEL_DTYPES, common_dtype, cuda_package

RECURRENCE_BACKENDS = ("auto", "torch", "fla")
FLA_DELTA_MAX_HEAD_K = 256  # chunk_gated_delta_rule keeps the state in 64-row tiles, at most four


def fla_ops(device: torch.device) -> ModuleType:
    """fla.ops for tensors on `device`, or a RuntimeError saying what is missing."""
    return cuda_package("recurrence backend 'fla'", "fla-core", "fla.ops", None, None, device)


def _fla_limits(dtype: torch.dtype, delta_head_k: int | None) -> str | None:
    """Why fla's kernels cannot take inputs in `dtype` (with the delta rule's key width), or None when they can."""
    if dtype not in KERNEL_DTYPES:
        return f"its kernels take float16, bfloat16 or float32 inputs, not {dtype}"
    if delta_head_k is not None and delta_head_k > FLA_DELTA_MAX_HEAD_K:
        return f"its delta-rule kernels take dk <= {FLA_DELTA_MAX_HEAD_K}; got dk={delta_head_k}"
    return None


def resolve_recurrence_backend(
    backend: str, device: torch.device | str, dtype: torch.dtype = torch.float32, delta_head_k: int | None = None
) -> str:
    """The concrete backend `backend` means for a recurrence on `device` whose q, k, v have common dtype `dtype`
    (`delta_head_k`: the delta rule's key width; None for gated linear attention).

    ValueError for an unknown name or inputs fla cannot take; RuntimeError when `fla` cannot run here.
    """
    if backend not in RECURRENCE_BACKENDS:
        raise ValueError(f"unknown recurrence backend {backend!r}; choose one of {', '.join(RECURRENCE_BACKENDS)}")
    device = torch.device(device)
    if backend == "torch" or (backend == "auto" and device.type != "cuda"):
        return "torch"
    try:
        fla_ops(device)
    except RuntimeError:
        if backend == "auto":
            return "torch"
        raise
    why = _fla_limits(dtype, delta_head_k)
    if why is None:
        return "fla"
    if backend == "auto":
        return "torch"
    raise ValueError(f"recurrence backend 'fla': {why}; use backend 'torch' or 'auto'")


def _fla_layout(dtype: torch.dtype, *tensors: Tensor) -> list[Tensor]:
    """(B, H, L, ...) -> fla's (B, L, H, ...), in `dtype`."""
    return [t.transpose(1, 2).to(dtype) for t in tensors]


def fla_gated_linear_attention(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None, state: Tensor
) -> tuple[Tensor, Tensor]:
    """`gated_linear_attention` on fla: q, k (B, H, L, dk), v (B, H, L, dv), log_decay None, (B, H, L) or
    (B, H, L, dk), the start state (B, H, dk, dv) -> o (B, H, L, dv) in q's dtype and the final state in fp32."""
    ops = fla_ops(q.device)
    q_, k_, v_ = _fla_layout(common_dtype(q, k, v), q, k, v)  # (B, L, H, d)
    # scale=1: fla scales q by dk^-1/2 unless told; our state's (dk, dv) layout is fla's default [K, V]
    kw = dict(scale=1.0, initial_state=state.float(), output_final_state=True)
    if log_decay is not None and log_decay.dim() == 4:
        o, final = ops.chunk_gla(q_, k_, v_, *_fla_layout(torch.float32, log_decay), **kw)
    else:
        g = None if log_decay is None else _fla_layout(torch.float32, log_decay)[0]  # (B, L, H)
        o, final = ops.chunk_simple_gla(q_, k_, v_, g, **kw)
    return o.transpose(1, 2).to(q.dtype), final.float()


def fla_delta_rule(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_decay: Tensor | None, state: Tensor
) -> tuple[Tensor, Tensor]:
    """`delta_rule` on fla: q, k (B, H, L, dk), v (B, H, L, dv), beta and log_decay (B, H, L) (log_decay may be None),
    the start state (B, H, dk, dv) -> o (B, H, L, dv) in q's dtype and the final state in fp32."""
    ops = fla_ops(q.device)
    q_, k_, v_ = _fla_layout(common_dtype(q, k, v), q, k, v)  # (B, L, H, d)
    # chunk_delta_rule (no decay) refuses fp32 inputs: the gated kernel with log decay 0 is the same recurrence
    g = torch.zeros_like(beta, dtype=torch.float32) if log_decay is None else log_decay
    g_, beta_ = _fla_layout(torch.float32, g, beta)  # (B, L, H); fla reads beta in fp32 whatever its dtype
    # keys as given (no L2 norm inside: the mixers normalise), q unscaled
    o, final = ops.chunk_gated_delta_rule(q_, k_, v_, g_, beta_, scale=1.0, initial_state=state.float(),
                                          output_final_state=True, use_qk_l2norm_in_kernel=False)
    return o.transpose(1, 2).to(q.dtype), final.float()
