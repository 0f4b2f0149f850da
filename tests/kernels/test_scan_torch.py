"""The chunked PyTorch scan against the sequential reference: values, last state, every gradient, stability."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqmix import kernels
from seqmix.kernels import ScanInputs, scan_torch
from seqmix.kernels.scan_torch import selective_scan_torch

from .cases import FEATURES, Case, assert_close, assert_matches, check_half_inputs, check_matches_reference, reference, run

SHAPES = {
    "L-not-multiple-of-chunk": Case(length=37),
    "L=1": Case(length=1),
    "L=chunk": Case(length=8),
    "L<chunk": Case(length=5),
    "N=1": Case(d_state=1),
    "N=16": Case(d_state=16, length=20),
    "N=64": Case(d_state=64, length=12, dim=4),
    "grouped-G=2": Case(groups=2),
    "grouped-G=dim": Case(groups=6, length=19),
    "batch=1": Case(batch=1, length=23),
}
@pytest.mark.parametrize("features", FEATURES.values(), ids=FEATURES.keys())
@pytest.mark.parametrize("case", SHAPES.values(), ids=SHAPES.keys())
def test_matches_reference(case: Case, features: dict) -> None:
    check_matches_reference(functools.partial(selective_scan_torch, chunk=8), case, **features)


@pytest.mark.parametrize("slab_chunks", [1, 2, 3], ids=["one-chunk-slabs", "two-chunk-slabs", "uneven-slabs"])
def test_slabs_match_reference(monkeypatch, slab_chunks: int) -> None:
    """Slabs of one chunk and of several (the local-pass path) give the same answer as one big slab."""
    case = Case(length=45, groups=2)
    per_chunk = case.batch * case.dim * case.d_state * 4
    monkeypatch.setattr(scan_torch, "SLAB_ELEMS", per_chunk * slab_chunks)
    fn = functools.partial(selective_scan_torch, chunk=4)
    check_matches_reference(fn, case)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 3),
    groups=st.sampled_from([None, 1, 2]),
    d_state=st.sampled_from([1, 2, 5, 16]),
    length=st.integers(1, 40),
    chunk=st.integers(1, 16),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_random(batch, heads, groups, d_state, length, chunk, flags, seed) -> None:
    dim = heads * (groups or 1)
    z, D, bias, softplus = flags
    case = Case(batch, dim, d_state, length, groups, z, D, bias, softplus)
    ins = case.inputs(seed)
    fn = functools.partial(selective_scan_torch, chunk=chunk)
    assert_matches(run(fn, case, ins), reference(case, ins))


def test_gradient_of_last_state_only() -> None:
    """A loss on the last state alone (out unused) still backpropagates."""
    case = Case(length=21)
    ins = {k: (v.requires_grad_() if v is not None else None) for k, v in case.inputs().items()}
    _, last = selective_scan_torch(ScanInputs(*ins.values(), delta_softplus=True, return_last_state=True), chunk=8)
    last.sum().backward()
    _, last_ref = kernels.selective_scan_ref(ScanInputs(*ins.values(), delta_softplus=True, return_last_state=True))
    want = torch.autograd.grad(last_ref.sum(), [ins["u"], ins["A"]])
    assert_close(ins["u"].grad, want[0], 2e-5, "grad of u")
    assert_close(ins["A"].grad, want[1], 2e-5, "grad of A")
    assert ins["z"].grad is None or ins["z"].grad.abs().max() == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_fp32(dtype: torch.dtype) -> None:
    """Half-precision inputs: output in that dtype, fp32 state equal to the fp32 reference on the same values."""
    check_half_inputs(selective_scan_torch, Case(length=300, dim=4, dtype=dtype))


def _unstable_inputs(length: int, dim: int = 4, d_state: int = 8):
    """Mixed regimes: delta*|A| up to ~1e4 next to delta ~1e-3 (long memory) channels."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, dim, length, generator=g)
    scale = torch.tensor([1e-3, 1.0, 50.0, 300.0])[:dim, None]
    delta = scale * torch.rand(1, dim, length, generator=g) + 1e-4
    A = -torch.logspace(-1, 1.5, d_state).repeat(dim, 1)
    B = torch.randn(1, d_state, length, generator=g)
    C = torch.randn(1, d_state, length, generator=g)
    D = torch.ones(dim)
    z = torch.randn(1, dim, length, generator=g)
    return [u, delta, A, B, C, D, z]


def test_long_sequence_large_decay_is_finite_and_exact() -> None:
    """L=8192 with delta*|A| up to ~1e4: no inf/NaN forward or backward, and still equal to the reference."""
    ins = [t.requires_grad_() for t in _unstable_inputs(8192)]
    out, last = selective_scan_torch(ScanInputs(*ins, return_last_state=True))
    assert torch.isfinite(out).all() and torch.isfinite(last).all()
    (out.square().mean() + last.square().mean()).backward()
    for name, t in zip(("u", "delta", "A", "B", "C", "D", "z"), ins, strict=True):
        assert torch.isfinite(t.grad).all(), name
    with torch.no_grad():
        ref_out, ref_last = kernels.selective_scan_ref(ScanInputs(*ins, return_last_state=True))
    assert_close(out.detach(), ref_out, 1e-5, "output")
    assert_close(last.detach(), ref_last, 1e-5, "last state")


def test_long_sequence_large_decay_gradients_match_reference() -> None:
    ins = _unstable_inputs(1024, dim=4, d_state=4)
    case = Case(z=True, D=True, bias=False, softplus=False)
    named = dict(zip(("u", "delta", "A", "B", "C", "D", "z"), ins, strict=True), delta_bias=None)
    assert_matches(run(selective_scan_torch, case, named), reference(case, named), tol=1e-5)


def test_empty_sequence() -> None:
    case = Case(length=0)
    out, last, _ = run(selective_scan_torch, case, case.inputs(), grads=False)
    assert out.shape == (2, 6, 0) and torch.equal(last, torch.zeros(2, 6, 4))


def test_last_state_can_be_updated_in_place() -> None:
    """The Mamba decode step advances the returned state in place, with autograd on."""
    case = Case(length=9)
    ins = {k: (v.requires_grad_() if v is not None else None) for k, v in case.inputs().items()}
    _, last = selective_scan_torch(ScanInputs(*ins.values(), delta_softplus=True, return_last_state=True))
    last.mul_(0.5)
    assert last._base is None


def test_saves_only_inputs_and_chunk_start_states() -> None:
    """Nothing (B, D, L, N)-sized is kept for the backward: the inputs themselves plus one state per chunk."""
    case = Case(batch=2, dim=6, d_state=4, length=40)
    ins = {k: (v.requires_grad_() if v is not None else None) for k, v in case.inputs().items()}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        selective_scan_torch(ScanInputs(*ins.values(), delta_softplus=True), chunk=8)
    inputs = {v.data_ptr() for v in ins.values() if v is not None}
    extra = [t for t in saved if t.data_ptr() not in inputs]
    assert [tuple(t.shape) for t in extra] == [(2, 1, 5, 6, 4)]  # (batch, G, L / chunk, H, N)
