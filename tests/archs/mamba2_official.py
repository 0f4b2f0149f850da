"""Load mamba_ssm's official Mamba-2 block on a CPU machine, and build it twinned with ours (same weights)."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types

import pytest
import torch

from seqmix.archs import MIXERS

# the official block's options that take another code path in ours, each run against the official block
OPTION_CASES = [
    (32, {}, 17),  # the official defaults: d_state 128, one head of 64
    (48, {"d_state": 16}, 20),  # headdim None at d_inner 96: 48, two heads
    (16, {"d_state": 8, "headdim": 4, "ngroups": 2}, 23),  # grouped B, C and a grouped gated norm
    (24, {"d_state": 4, "headdim": 8, "d_conv": 2, "expand": 1, "bias": True, "conv_bias": False}, 9),
    (16, {"d_state": 8, "headdim": 8, "D_has_hdim": True, "norm_before_gate": True, "dt_limit": (0.01, 0.05)}, 12),
    (16, {"d_state": 8, "headdim": 4, "d_ssm": 16, "rmsnorm": False, "conv_init": 0.3}, 11),  # a gated-MLP half
]


def import_official(triton_interpret: bool = False) -> types.ModuleType:
    """mamba_ssm.modules.mamba2 with the missing CUDA extensions stubbed; skip the test if mamba-ssm is absent.

    With triton_interpret (a process started with TRITON_INTERPRET=1), three shims let the official Triton kernels
    run on CPU tensors: every `triton.autotune` keeps its first config (the interpreter cannot benchmark several),
    `torch.cuda.device(index)` is a no-op (the kernels enter it with `x.device.index`, which is None on CPU), and
    `torch.cuda.get_device_properties` reports one SM (the SSD's backward sizes its grid by the SM count, which changes
    how heads are split between programs, not what they compute).
    """
    if importlib.util.find_spec("mamba_ssm") is None:
        pytest.skip("mamba-ssm not installed (pip install seqmix[cuda]; .ci/run installs it)")
    if triton_interpret:
        import triton

        autotune = triton.autotune
        triton.autotune = lambda configs, key, **kw: autotune(configs=configs[:1], key=key, **kw)
        torch.cuda.device = lambda index: contextlib.nullcontext()
        torch.cuda.get_device_properties = lambda device: types.SimpleNamespace(multi_processor_count=1)
    for extension in ("selective_scan_cuda", "causal_conv1d_cuda"):  # CUDA-only; nothing here calls into them
        sys.modules.setdefault(extension, types.ModuleType(extension))
    import mamba_ssm.modules.mamba2 as official

    official.causal_conv1d_fn = official.causal_conv1d_update = None  # its own nn.Conv1d / rolled-window paths
    return official


def twin(official: types.ModuleType, d_model: int, seed: int = 0, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Our Mamba2 and the official one (its unfused path), built from one seed, with our weights loaded into it."""
    torch.manual_seed(seed)
    ours = MIXERS["mamba2"](d_model, **kwargs)
    kwargs = {**kwargs, "headdim": ours.headdim}
    theirs = official.Mamba2(d_model, use_mem_eff_path=False, layer_idx=0, **kwargs)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def perturbed_twin(official: types.ModuleType, d_model: int, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """twin() moved away from the init, so that the norm weight, D, dt_bias and A_log all matter."""
    ours, theirs = twin(official, d_model, **kwargs)
    with torch.no_grad():
        for p in ours.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.3)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def official_ssm_state(state: dict) -> torch.Tensor:
    """Our SSM state (B, H, N, P), the kernel's (dk, dv) layout -> the official one (B, H, P, N)."""
    return state["ssm"].transpose(-1, -2)
