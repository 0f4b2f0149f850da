"""ScanInputs: the field order is selective_scan_fn's, and the shared preprocessing against written-out formulas."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from seqmix.kernels import ScanInputs, selective_scan, selective_state_update

from .cases import Case


def test_fields_are_the_public_signature_in_order() -> None:
    """`ScanInputs(*args, **kwargs)` packs selective_scan's arguments and `f(*x)` unpacks them, defaults included."""
    params = [p for p in inspect.signature(selective_scan).parameters.values() if p.name != "backend"]
    assert list(ScanInputs._fields) == [p.name for p in params]
    assert ScanInputs._field_defaults == {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    step = list(inspect.signature(selective_state_update).parameters)
    assert step[1:] == list(ScanInputs._fields[:9])  # the decode step: state, then the fields of one token


@pytest.mark.parametrize("softplus", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_discretised_sequence_and_token(softplus: bool, bias: bool) -> None:
    ins = Case(bias=bias, softplus=softplus, dtype=torch.bfloat16).inputs()
    x = ScanInputs(*ins.values(), delta_softplus=softplus)
    raw = ins["delta"].float() + (ins["delta_bias"][:, None] if bias else 0)
    want = F.softplus(raw) if softplus else raw
    got_raw, got = x.discretised()
    assert got_raw.dtype == got.dtype == torch.float32
    assert torch.equal(got_raw, raw) and torch.equal(got, want)
    # A softplus over other shapes may round differently in the last bit (vector vs scalar loops): exact before it.
    part_raw, part = x.discretised(slice(3, 9))
    assert torch.equal(part_raw, raw[..., 3:9])
    torch.testing.assert_close(part, want[..., 3:9], rtol=1e-6, atol=0)
    token = ScanInputs(*(t[..., 5] if t is not None and t.dim() == 3 else t for t in x.tensors), softplus)
    token_raw, token_dt = token.discretised()  # one token: delta (batch, dim), bias (dim,)
    assert torch.equal(token_raw, raw[..., 5])
    torch.testing.assert_close(token_dt, want[..., 5], rtol=1e-6, atol=0)


@pytest.mark.parametrize("groups", [None, 2, 6])
def test_per_channel_and_channelwise(groups: int | None) -> None:
    ins = Case(groups=groups).inputs()
    x = ScanInputs(*ins.values())
    Bx = x.per_channel(x.B)
    assert Bx.shape == (2, 6, 4, 37) and Bx.dtype == torch.float32
    for c in range(6):
        want = ins["B"] if groups is None else ins["B"][:, c // (6 // groups)]
        assert torch.equal(Bx[:, c], want), c
    token = ScanInputs(ins["u"][..., 0], ins["delta"][..., 0], ins["A"], ins["B"][..., 0], ins["C"][..., 0], ins["D"])
    assert torch.equal(token.per_channel(token.B), Bx[..., 0])
    assert x.channelwise(x.D).shape == (6, 1) and token.channelwise(token.D).shape == (6,)


def test_gradients_cast_ungroup_and_skip_absent() -> None:
    ins = Case(groups=None, z=False, dtype=torch.bfloat16).inputs()
    ins["C"] = torch.randn(2, 3, 4, 37).to(torch.bfloat16)  # grouped C next to an ungrouped B: both read as G = 3
    x = ScanInputs(*ins.values())
    g = {k: torch.randn(v.shape) for k, v in ins.items() if v is not None}
    dB, dC = torch.randn(2, 3, 4, 37), torch.randn(2, 3, 4, 37)
    got = x.gradients(g["u"], g["delta"], g["A"], dB, dC, g["D"], torch.randn(2, 6, 37), g["delta_bias"])
    assert len(got) == len(ScanInputs._fields) and got[6] is None and got[8:] == (None, None)
    assert torch.equal(got[3], dB.sum(1).to(torch.bfloat16)) and torch.equal(got[4], dC.to(torch.bfloat16))
    for i, name in enumerate(("u", "delta", "A", "B", "C", "D")):
        assert got[i].dtype == ins[name].dtype and got[i].shape == ins[name].shape, name
    assert got[2] is g["A"]  # already in A's dtype: no copy


def test_output() -> None:
    y, last = torch.zeros(1), torch.ones(1)
    ins = Case().inputs().values()
    assert ScanInputs(*ins).output(y, last) is y
    assert ScanInputs(*ins, return_last_state=True).output(y, last) == (y, last)
