"""Our sequential reference against mamba_ssm's own selective_scan_ref (the ground truth, on CPU)."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from seqmix.kernels.scan_ref import selective_scan_ref

from .cases import Case, assert_matches, run


@pytest.fixture(scope="module")
def mamba_ref():
    if importlib.util.find_spec("mamba_ssm") is None:
        pytest.skip("mamba-ssm is not installed (CI installs it; see .ci/run)")
    # mamba_ssm imports its CUDA extension at import time; a stub lets the pure-PyTorch reference load on CPU.
    sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    from mamba_ssm.ops.selective_scan_interface import selective_scan_ref as official

    return official


CASES = {
    "all": Case(),
    "plain": Case(z=False, D=False, bias=False, softplus=False),
    "grouped": Case(groups=3, length=13),
    "N=16": Case(d_state=16, length=9),
    "L=1": Case(length=1),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_ref_matches_mamba_ssm(mamba_ref, case: Case) -> None:
    ins = case.inputs()
    assert_matches(run(selective_scan_ref, case, ins), run(lambda x: mamba_ref(*x), case, ins), tol=1e-6)
