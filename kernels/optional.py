"""Optional CUDA packages (mamba-ssm, causal-conv1d, fla-core) as backends: imported only when asked for, or a
RuntimeError that says what is missing."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

import torch
from torch import Tensor

INSTALL_HINT = "pip install seqmix[cuda]"
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)  # what the packages' Triton kernels (fla, SSD) take


def common_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype a package kernel computes its inputs in: the tensors' common one."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def cuda_package(backend: str, package: str, module: str, extension: str | None, symbol: str | None,
                 device: torch.device) -> ModuleType:
    """`module` of an optional CUDA package for tensors on `device`, or a RuntimeError naming the first thing missing:
    the package (`package`, as pip spells it), CUDA tensors, or its compiled `extension` (a stub without `symbol`, as
    tests load on CPU, does not count; None for a package of Triton kernels only). `backend` names the caller in the
    message, e.g. "backend 'mamba_ssm'"."""
    if importlib.util.find_spec(module.partition(".")[0]) is None:
        raise RuntimeError(f"{backend} needs the {package} package: {INSTALL_HINT}")
    if device.type != "cuda":
        raise RuntimeError(f"{backend} needs CUDA tensors; got device {device.type}")
    stub = sys.modules.get(extension) if extension is not None else None
    if stub is not None and not hasattr(stub, symbol):
        raise RuntimeError(f"{backend} needs {package}'s compiled CUDA extension; only a stub is loaded")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise RuntimeError(f"{backend} needs {package} built with CUDA ({err}): {INSTALL_HINT}") from err
