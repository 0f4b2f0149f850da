"""Causal depthwise conv1d (Mamba's short convolution): plain PyTorch, or causal-conv1d's CUDA kernels.

`causal_conv1d` runs a whole sequence (training, prefill), `causal_conv1d_step` one token of decode against a
(batch, dim, width - 1) window of past inputs. Backend `auto` picks `causal_conv1d` on CUDA tensors when the
package (with its compiled extension) imports, else `torch`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .optional import cuda_package

CONV_BACKENDS = ("auto", "torch", "causal_conv1d")
ACTIVATIONS = (None, "silu")



def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """out[:, :, t] = act(bias + sum_k weight[:, k] * x[:, :, t - width + 1 + k]), zeros before the sequence."""
    width = weight.shape[1]
    # (B, D, L + width - 1) with padding on both sides; the first L outputs are the causal ones
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(out) if activation == "silu" else out


def causal_conv1d_update_torch(
    x: Tensor, conv_state: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None
) -> tuple[Tensor, Tensor]:
    """One decode step: x (B, D), conv_state (B, D, width - 1) -> output (B, D) and the shifted window."""
    window = torch.cat([conv_state, x[..., None]], dim=-1)  # (B, D, width)
    out = (window * weight).sum(-1)
    if bias is not None:
        out = out + bias
    return (F.silu(out) if activation == "silu" else out), window[..., 1:]


def _package_fns(device: torch.device) -> tuple[Callable, Callable]:
    """causal-conv1d's (causal_conv1d_fn, causal_conv1d_update), or RuntimeError saying what is missing."""
    module = cuda_package("conv backend 'causal_conv1d'", "causal-conv1d", "causal_conv1d", "causal_conv1d_cuda",
                          "causal_conv1d_fwd", device)
    return module.causal_conv1d_fn, module.causal_conv1d_update


def resolve_conv_backend(backend: str, device: torch.device | str) -> str:
    """The concrete conv backend `backend` means for tensors on `device`; RuntimeError if it cannot run there."""
    device = torch.device(device)
    if backend not in CONV_BACKENDS:
        raise ValueError(f"unknown conv backend {backend!r}; choose one of {', '.join(CONV_BACKENDS)}")
    if backend == "auto":
        if device.type != "cuda":
            return "torch"
        try:
            _package_fns(device)
        except RuntimeError:
            return "torch"
        return "causal_conv1d"
    if backend == "causal_conv1d":
        _package_fns(device)
    return backend


def _check(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str | None, seq: bool) -> None:
    want = "(batch, dim, seqlen)" if seq else "(batch, dim)"
    if x.dim() != (3 if seq else 2):
        raise ValueError(f"causal conv1d: x must have shape {want}; got {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"causal conv1d: weight must have shape (dim, width) = ({x.shape[1]}, W); got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (x.shape[1],):
        raise ValueError(f"causal conv1d: bias must have shape (dim,) = ({x.shape[1]},); got {tuple(bias.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"causal conv1d: unknown activation {activation!r}; choose None or 'silu'")


def causal_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None, backend: str = "auto"
) -> Tensor:
    """Causal depthwise conv of x (B, D, L) with weight (D, width), optional bias (D,) and SiLU: (B, D, L)."""
    _check(x, weight, bias, activation, seq=True)
    if resolve_conv_backend(backend, x.device) == "torch":
        return causal_conv1d_torch(x, weight, bias, activation)
    fn, _ = _package_fns(x.device)
    return fn(x, weight, bias, activation=activation)


def causal_conv1d_step(
    x: Tensor,
    conv_state: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """One decode step: x (B, D) and the last width - 1 inputs (B, D, width - 1) -> output (B, D), new window.

    `conv_state` is left unchanged (the CUDA update works in place, so it gets a copy).
    """
    _check(x, weight, bias, activation, seq=False)
    want = (*x.shape, weight.shape[1] - 1)  # (batch, dim, width - 1)
    if tuple(conv_state.shape) != want:
        raise ValueError(f"causal conv1d: conv_state must have shape {want}; got {tuple(conv_state.shape)}")
    if resolve_conv_backend(backend, x.device) == "torch":
        return causal_conv1d_update_torch(x, conv_state, weight, bias, activation)
    _, update = _package_fns(x.device)
    window = conv_state.clone()
    out = update(x.to(window.dtype), window, weight, bias, activation=activation)  # updates `window` in place
    return out, window
