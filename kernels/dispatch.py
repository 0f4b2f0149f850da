"""One entry point for the selective scan; picks a backend that can run on the given tensors."""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .optional import cuda_package
from .scan_inputs import ScanInputs
from .scan_ref import selective_scan_ref
from .scan_torch import selective_scan_torch

BACKENDS = ("auto", "ref", "torch", "cpu", "triton", "mamba_ssm")



def _interpret_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def _mamba_ssm_fn(device: torch.device) -> Callable:
    """mamba_ssm's CUDA selective_scan_fn, or RuntimeError saying what is missing."""
    module = cuda_package("backend 'mamba_ssm'", "mamba-ssm", "mamba_ssm.ops.selective_scan_interface",
                          "selective_scan_cuda", "fwd", device)
    return module.selective_scan_fn


def _triton_fn(device: torch.device) -> Callable:
    """seqmix.kernels.scan_triton's entry point, or RuntimeError saying what is missing."""
    if importlib.util.find_spec("triton") is None:
        raise RuntimeError("backend 'triton' needs the triton package (Linux only): pip install triton")
    if device.type != "cuda" and not _interpret_requested():
        raise RuntimeError(f"backend 'triton' needs CUDA tensors or TRITON_INTERPRET=1; got device {device.type}")
    from .scan_triton import selective_scan_triton

    return selective_scan_triton


def _cpu_fn(device: torch.device) -> Callable:
    """seqmix.kernels.scan_cpu's fused C scan, or RuntimeError saying why it cannot run."""
    if device.type != "cpu":
        raise RuntimeError(f"backend 'cpu' needs CPU tensors; got device {device.type}")
    from . import scan_cpu

    if not scan_cpu.available():
        raise RuntimeError(f"backend 'cpu' is unavailable: {scan_cpu.why_unavailable()}")
    return scan_cpu.selective_scan_cpu


_warned_fallback = False


def _auto_cpu() -> str:
    """`cpu` when the fused C scan builds here, else `torch` (with one warning when the build failed)."""
    global _warned_fallback
    try:
        _cpu_fn(torch.device("cpu"))
        return "cpu"
    except RuntimeError as err:
        if not _warned_fallback and "SEQMIX_NO_CPU_KERNEL" not in str(err):
            warnings.warn(f"selective scan: using the PyTorch scan on CPU ({err})", RuntimeWarning, stacklevel=3)
            _warned_fallback = True
        return "torch"


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Concrete backends that can run on tensors on `device` in this environment."""
    device = torch.device(device)
    found = ["ref", "torch"]
    for name in ("cpu", "triton", "mamba_ssm"):
        try:
            resolve_backend(name, device)
        except RuntimeError:
            continue
        found.append(name)
    return found


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The concrete backend `backend` means for tensors on `device`; RuntimeError if it cannot run there."""
    device = torch.device(device)
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        if device.type == "cpu":
            return _auto_cpu()
        if device.type != "cuda":
            return "torch"
        for name in ("mamba_ssm", "triton"):
            try:
                return resolve_backend(name, device)
            except RuntimeError:
                continue
        return "torch"
    if backend == "cpu":
        _cpu_fn(device)
    elif backend == "triton":
        _triton_fn(device)
    elif backend == "mamba_ssm":
        _mamba_ssm_fn(device)
    return backend


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with mamba_ssm's `selective_scan_fn` semantics (the arguments: `ScanInputs`) by `backend`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    x = ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    x.check()
    name = resolve_backend(backend, u.device)
    if name == "ref":
        return selective_scan_ref(x)
    if name == "torch":
        return selective_scan_torch(x)
    if name == "cpu":
        return _cpu_fn(u.device)(x)
    if name == "triton":
        return _triton_fn(u.device)(x)
    return _mamba_ssm_fn(u.device)(*x)  # mamba_ssm's own function takes the arguments unpacked
