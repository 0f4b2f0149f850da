"""The fused C scan (kernels/scan_cpu.py, kernels/csrc/scan_cpu.c) against the sequential reference: values, last
state and every gradient, over shapes, features, segment boundaries, threads, half inputs and extreme decays."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqmix import kernels
from seqmix.kernels import ScanInputs, scan_cpu
from seqmix.kernels.scan_cpu import selective_scan_cpu

from .cases import FEATURES, Case, assert_close, assert_matches, check_half_inputs, check_matches_reference, reference, run

pytestmark = pytest.mark.skipif(not scan_cpu.available(), reason=f"fused CPU scan unavailable: {scan_cpu.why_unavailable()}")

SHAPES = {
    "L=1": Case(length=1),
    "L=37": Case(length=37),
    "L=segment": Case(length=64, dim=3),
    "L=segment+1": Case(length=65, dim=3),
    "L=3-segments-and-a-bit": Case(length=131, dim=2, batch=1),
    "N=1": Case(d_state=1),
    "N=8-one-vector": Case(d_state=8, length=9),
    "N=16-two-vectors": Case(d_state=16, length=20),
    "N=13-vector-and-tail": Case(d_state=13, length=11),
    "N=64": Case(d_state=64, length=12, dim=4),
    "grouped-G=2": Case(groups=2),
    "grouped-G=dim": Case(groups=6, length=19),
}
@pytest.mark.parametrize("features", FEATURES.values(), ids=FEATURES.keys())
@pytest.mark.parametrize("case", SHAPES.values(), ids=SHAPES.keys())
def test_matches_reference(case: Case, features: dict) -> None:
    check_matches_reference(selective_scan_cpu, case, **features)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize(
    "case", [Case(batch=1, dim=7, length=30), Case(batch=3, dim=6, groups=2, length=70)], ids=["b1", "b3g2"]
)
def test_threads_split_channels_into_blocks(threads: int, case: Case) -> None:
    """More threads than batch rows: channels split into blocks with their own dB / dC partials."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check_matches_reference(selective_scan_cpu, case)
    finally:
        torch.set_num_threads(before)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 3),
    groups=st.sampled_from([None, 1, 2]),
    d_state=st.sampled_from([1, 3, 8, 16, 20]),
    length=st.integers(1, 140),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_random(batch, heads, groups, d_state, length, flags, seed) -> None:
    z, D, bias, softplus = flags
    case = Case(batch, heads * (groups or 1), d_state, length, groups, z, D, bias, softplus)
    check_matches_reference(selective_scan_cpu, case, seed)


def test_gradient_of_last_state_only() -> None:
    case = Case(length=70)
    ins = {k: (v.requires_grad_() if v is not None else None) for k, v in case.inputs().items()}
    _, last = selective_scan_cpu(ScanInputs(*ins.values(), delta_softplus=True, return_last_state=True))
    last.sum().backward()
    _, last_ref = kernels.selective_scan_ref(ScanInputs(*ins.values(), delta_softplus=True, return_last_state=True))
    want = torch.autograd.grad(last_ref.sum(), [ins["u"], ins["A"], ins["B"]])
    for name, w in zip(("u", "A", "B"), want, strict=True):
        assert_close(ins[name].grad, w, 2e-5, f"grad of {name}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_fp32(dtype: torch.dtype) -> None:
    check_half_inputs(selective_scan_cpu, Case(length=100, dim=4, dtype=dtype))


def test_extreme_decays_are_finite_and_exact() -> None:
    """delta * |A| from 1e-4 to ~1e4 (exp underflows to 0 in fp32): finite, and equal to the reference."""
    g = torch.Generator().manual_seed(0)
    dim, n, length = 4, 8, 300
    named = {
        "u": torch.randn(1, dim, length, generator=g),
        "delta": torch.tensor([1e-3, 1.0, 50.0, 300.0])[:, None] * torch.rand(1, dim, length, generator=g) + 1e-4,
        "A": -torch.logspace(-1, 1.5, n).repeat(dim, 1),
        "B": torch.randn(1, n, length, generator=g),
        "C": torch.randn(1, n, length, generator=g),
        "D": torch.ones(dim),
        "z": torch.randn(1, dim, length, generator=g),
        "delta_bias": None,
    }
    case = Case(softplus=False, bias=False)
    got = run(selective_scan_cpu, case, named)
    assert all(torch.isfinite(t).all() for t in (got[0], got[1], *got[2].values()))
    assert_matches(got, reference(case, named), tol=1e-5)


def test_nan_input_gives_nan_output() -> None:
    """A NaN anywhere in delta reaches the output (the numerical guard relies on it), as in the reference."""
    ins = Case(length=10, z=False).inputs()
    ins["delta"][0, 1, 3] = float("nan")
    out = selective_scan_cpu(ScanInputs(*ins.values(), delta_softplus=True))
    ref = kernels.selective_scan_ref(ScanInputs(*ins.values(), delta_softplus=True))
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any()


def test_rejects_other_devices() -> None:
    ins = Case(length=3).inputs()
    ins = {k: (v.to("meta") if v is not None else None) for k, v in ins.items()}
    with pytest.raises(RuntimeError, match="backend 'cpu' needs CPU tensors; got device meta"):
        selective_scan_cpu(ScanInputs(*ins.values()))


def test_the_build_is_cached(tmp_path, monkeypatch) -> None:
    """A fresh cache builds once; the second load reuses the same file."""
    monkeypatch.setenv("SEQMIX_CACHE", str(tmp_path))
    scan_cpu._build()
    files = sorted(p.name for p in (tmp_path / "kernels").iterdir())
    assert len(files) == 1 and files[0].startswith("scan_cpu-") and files[0].endswith(".so")
    mtime = (tmp_path / "kernels" / files[0]).stat().st_mtime_ns
    scan_cpu._build()
    assert (tmp_path / "kernels" / files[0]).stat().st_mtime_ns == mtime


def test_disabled_by_environment(monkeypatch) -> None:
    monkeypatch.setenv("SEQMIX_NO_CPU_KERNEL", "1")
    with pytest.raises(RuntimeError, match="SEQMIX_NO_CPU_KERNEL is set"):
        scan_cpu._build()
