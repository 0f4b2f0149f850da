"""Triton-kernel cases, run by tests/kernels/test_scan_triton.py in a fresh process (see there why).

Without CUDA they need TRITON_INTERPRET=1 before `import triton` (Triton's own library functions are
decorated at import time), which this module sets when it is the first to import triton.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"

from seqmix.kernels import ScanInputs, selective_scan  # noqa: E402

from .cases import Case, assert_matches, reference, run  # noqa: E402


def _scan(**blocks):
    from seqmix.kernels.scan_triton import selective_scan_triton

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def fn(x: ScanInputs):
        x = ScanInputs(*(t.to(device) if t is not None else None for t in x.tensors), *x[8:])
        out, last = selective_scan_triton(x, **blocks)
        return out.cpu(), last.cpu()

    return fn


CASES = {
    "L-not-multiple-of-chunk": (Case(length=21), dict(block_l=8)),
    "L=1": (Case(length=1), {}),
    "N=1-plain": (Case(d_state=1, z=False, D=False, bias=False, softplus=False), dict(block_l=16)),
    "N=16": (Case(d_state=16, length=10, dim=4), dict(block_l=4)),
    "N=64": (Case(d_state=64, length=5, dim=2, batch=1), dict(block_l=4)),
    "N=64-default-blocks-two-chunks": (Case(d_state=64, length=20, dim=2, batch=1), {}),
    "grouped-channel-blocks": (Case(groups=2, length=11), dict(block_l=4, block_h=2)),
    "z-only-ungrouped-channel-blocks": (Case(D=False, bias=False, length=9), dict(block_l=8, block_h=4)),
    "D-bias-no-z-no-softplus": (Case(z=False, softplus=False, length=13), dict(block_l=4)),
}


@pytest.mark.parametrize(("case", "blocks"), CASES.values(), ids=CASES.keys())
def test_triton_matches_reference(case: Case, blocks: dict) -> None:
    ins = case.inputs()
    assert_matches(run(_scan(**blocks), case, ins), reference(case, ins))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triton_half_inputs_accumulate_in_fp32(dtype: torch.dtype) -> None:
    case = Case(length=9, dim=2, batch=1, dtype=dtype)
    ins = case.inputs()
    out, last, grads = run(_scan(block_l=4), case, ins)
    want = reference(case, ins)
    assert out.dtype == dtype and last.dtype == torch.float32
    assert_matches((out, last, {}), (want[0], want[1], {}), tol=1e-2)
    assert (last - want[1]).abs().max() <= 1e-5 * (1 + want[1].abs().max())
    for name, g in grads.items():
        assert g.dtype == ins[name].dtype, name


@pytest.mark.parametrize("d_state", [1, 4, 16, 17, 64, 128, 256])
@pytest.mark.parametrize("d_inner", [2, 48, 1536])
def test_forward_and_backward_walk_the_same_chunks(d_state: int, d_inner: int) -> None:
    from seqmix.kernels.scan_triton import bwd_meta, fwd_meta

    f, b = fwd_meta(d_inner, d_state), bwd_meta(d_inner, d_state)
    assert f["BLOCK_L"] == b["BLOCK_L"] >= 2 and f["BLOCK_N"] == b["BLOCK_N"] >= d_state
    assert b["BLOCK_H"] * b["BLOCK_L"] * b["BLOCK_N"] <= max(2048, 4 * b["BLOCK_N"])  # the backward's register tile
    assert f["BLOCK_H"] >= b["BLOCK_H"]


def test_dispatch_reaches_triton() -> None:
    case = Case(length=6, dim=2, batch=1)
    ins = case.inputs()
    fn = lambda x: selective_scan(*x, backend="triton")  # noqa: E731
    if torch.cuda.is_available():
        fn = _scan()
    assert_matches(run(fn, case, ins), reference(case, ins))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    length=st.integers(1, 12),
    groups=st.sampled_from([None, 2]),
    d_state=st.sampled_from([1, 3, 8]),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    block_l=st.sampled_from([2, 4, 8]),
    seed=st.integers(0, 2**16),
)
def test_triton_matches_reference_random(length, groups, d_state, flags, block_l, seed) -> None:
    z, D, bias, softplus = flags
    case = Case(1, 4, d_state, length, groups, z, D, bias, softplus)
    ins = case.inputs(seed)
    assert_matches(run(_scan(block_l=block_l, block_h=2), case, ins), reference(case, ins))


def test_triton_last_state_is_a_fresh_tensor() -> None:
    case = Case(length=5, dim=2, batch=1)
    ins = {k: (v.requires_grad_() if v is not None else None) for k, v in case.inputs().items()}
    _, last = _scan()(ScanInputs(*ins.values(), delta_softplus=True, return_last_state=True))
    last.mul_(0.5)
    assert last._base is None
