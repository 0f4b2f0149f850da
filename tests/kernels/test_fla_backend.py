"""The recurrences' backend choice (auto, torch, fla) and its errors, and, in a fresh interpreted process, the fla
backend against flash-linear-attention's real Triton kernels (fla_triton_cases.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import pytest
import torch

from seqmix import archs, kernels
from seqmix.kernels import fla_backend, resolve_recurrence_backend

from ..interpreted import run_interpreted
from .recurrence_cases import DELTA, GLA

HERE = os.path.dirname(os.path.abspath(__file__))
needs_fla = pytest.mark.skipif(importlib.util.find_spec("fla") is None, reason="fla-core not installed (a dev dependency)")


@pytest.fixture
def fla_here(monkeypatch):
    """fla 'runs' on CPU: fla_ops answers with a namespace whose ops fail if called (the resolution alone is tested)."""
    monkeypatch.setattr(fla_backend, "fla_ops", lambda device: types.SimpleNamespace())


def test_public_names_and_auto_on_cpu() -> None:
    assert set(kernels.RECURRENCE_BACKENDS) == {"auto", "torch", "fla"}
    assert {"resolve_recurrence_backend", "RECURRENCE_BACKENDS"} <= set(kernels.__all__)
    assert resolve_recurrence_backend("auto", "cpu") == "torch"
    assert resolve_recurrence_backend("torch", "cpu") == "torch"


@pytest.mark.parametrize("kernel", [kernels.gated_linear_attention, kernels.delta_rule])
def test_unknown_backend_is_one_line_listing_the_valid_ones(kernel) -> None:
    rec = GLA if kernel is kernels.gated_linear_attention else DELTA
    with pytest.raises(ValueError, match=r"^unknown recurrence backend 'cuda'; choose one of auto, torch, fla$"):
        rec.run(kernel, rec.inputs(1, 1, 3, 2, 2, None), backend="cuda")


@needs_fla
def test_fla_needs_cuda_tensors() -> None:
    with pytest.raises(RuntimeError, match=r"^recurrence backend 'fla' needs CUDA tensors; got device cpu$"):
        GLA.run(kernels.gated_linear_attention, GLA.inputs(1, 1, 3, 2, 2, "head"), backend="fla")


def test_fla_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "fla", None)
    with pytest.raises(RuntimeError, match=r"needs the fla-core package: pip install seqmix\[cuda\]"):
        resolve_recurrence_backend("fla", "cuda")
    assert resolve_recurrence_backend("auto", "cuda") == "torch"


def test_fla_runs_only_what_its_kernels_take(fla_here) -> None:
    assert resolve_recurrence_backend("fla", "cpu") == "fla"  # the fixture's stand-in runs anywhere
    assert resolve_recurrence_backend("auto", "cuda", torch.bfloat16, delta_head_k=256) == "fla"
    for dtype, head_k, message in [(torch.float64, None, "kernels take float16, bfloat16 or float32 inputs, not torch.float64"),
                                   (torch.float32, 512, "delta-rule kernels take dk <= 256; got dk=512")]:
        assert resolve_recurrence_backend("auto", "cuda", dtype, head_k) == "torch"
        with pytest.raises(ValueError, match=f"^recurrence backend 'fla': its {message}; use backend 'torch' or 'auto'$"):
            resolve_recurrence_backend("fla", "cuda", dtype, head_k)


def test_empty_sequence_returns_the_start_state_on_every_backend(fla_here) -> None:
    for rec, kernel in ((GLA, kernels.gated_linear_attention), (DELTA, kernels.delta_rule)):
        ins = rec.inputs(2, 2, 0, 3, 4, "head")
        o, s = rec.run(kernel, ins, backend="fla")  # never reaches fla's (absent) ops
        assert o.shape == (2, 2, 0, 4) and torch.equal(s, ins["state"])


@pytest.mark.parametrize("name", ["linear_attention", "retnet", "gla", "deltanet", "gated_deltanet"])
def test_mixers_check_their_backend(name) -> None:
    with pytest.raises(ValueError, match=rf"^{name}: unknown backend 'cuda'; choose one of auto, torch, fla$"):
        archs.MIXERS[name](24, backend="cuda")
    assert archs.MIXERS[name](24, backend="torch").backend == "torch"


@needs_fla
@pytest.mark.slow  # a fresh interpreted process: fla's Triton kernels under TRITON_INTERPRET=1 (~50 s)
def test_fla_kernels_match_in_an_interpreted_process() -> None:
    run_interpreted(os.path.join(HERE, "fla_triton_cases.py"), "fla Triton cases")
