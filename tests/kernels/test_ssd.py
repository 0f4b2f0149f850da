"""Mamba-2's SSD (kernels.ssd): the gated-linear-attention route against the recurrence written out per head and
group, decode steps, the backend choice and bad input. The mamba_ssm route runs against the official Triton kernel
in tests/archs/mamba2_triton_cases.py (an interpreted process)."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from seqmix import archs, kernels
from seqmix.kernels import resolve_ssd_backend, ssd, ssd_step

from .recurrence_cases import rel_err, ssd_inputs


def ssd_loop(x, dt, A, B, C, state):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t^T x_t, y_t = C_t h_t, head i on group i // (H / G), one token at a time."""
    heads, groups = x.shape[1], B.shape[1]
    h, ys = state.clone(), []
    for t in range(x.shape[2]):
        y_t = []
        for i in range(heads):
            j = i // (heads // groups)
            decay = torch.exp(dt[:, i, t] * A[i])[:, None, None]  # (b, 1, 1)
            write = dt[:, i, t, None, None] * B[:, j, t, :, None] * x[:, i, t, None, :]  # (b, N, P)
            h[:, i] = decay * h[:, i] + write
            y_t.append((C[:, j, t, :, None] * h[:, i]).sum(1))  # (b, P)
        ys.append(torch.stack(y_t, dim=1))
    return torch.stack(ys, dim=2), h


@pytest.mark.parametrize("g, chunk", [(1, None), (2, 4), (4, 5)])
def test_ssd_is_the_recurrence_per_head_and_group(g, chunk):
    ins = ssd_inputs(g=g)
    want_y, want_h = ssd_loop(**ins)
    y, h = ssd(**ins, chunk_size=chunk, backend="torch")
    torch.testing.assert_close(y, want_y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, want_h, rtol=1e-12, atol=1e-12)


def test_steps_continue_a_prefill():
    ins = ssd_inputs(length=9, seed=1, dtype=torch.float32)
    want_y, want_h = ssd(**ins)
    cut = {n: t[:, :, :5] if n in ("x", "dt", "B", "C") else t for n, t in ins.items()}
    y, h = ssd(**cut)
    ys = [y]
    for t in range(5, 9):
        y_t, h = ssd_step(ins["x"][:, :, t], ins["dt"][:, :, t], ins["A"], ins["B"][:, :, t], ins["C"][:, :, t], h)
        ys.append(y_t[:, :, None])
    assert rel_err(torch.cat(ys, dim=2), want_y) <= 1e-6 and rel_err(h, want_h) <= 1e-6


def test_backend_choice_and_errors(monkeypatch):
    assert set(kernels.SSD_BACKENDS) == {"auto", "torch", "fla", "mamba_ssm"}
    assert resolve_ssd_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match=r"^unknown ssd backend 'cuda'; choose one of auto, torch, fla, mamba_ssm$"):
        ssd(**ssd_inputs(), backend="cuda")
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)
    with pytest.raises(RuntimeError, match=r"^ssd backend 'mamba_ssm' needs the mamba-ssm package"):
        resolve_ssd_backend("mamba_ssm", "cuda")
    monkeypatch.setitem(sys.modules, "fla", None)
    assert resolve_ssd_backend("auto", "cuda") == "torch"  # neither mamba_ssm nor fla


def test_mamba_ssm_is_auto_on_cuda_where_it_runs(monkeypatch):
    ssd_module = importlib.import_module("seqmix.kernels.ssd")  # kernels.ssd is the function
    monkeypatch.setattr(ssd_module, "mamba_chunk_scan", lambda device: None)  # 'runs' anywhere
    assert resolve_ssd_backend("auto", "cuda") == resolve_ssd_backend("mamba_ssm", "cpu") == "mamba_ssm"
    monkeypatch.setitem(sys.modules, "fla", None)
    assert resolve_ssd_backend("auto", "cuda", torch.float64) == "torch"
    with pytest.raises(ValueError, match=r"^ssd backend 'mamba_ssm' takes float16, bfloat16 or float32 inputs, not"):
        resolve_ssd_backend("mamba_ssm", "cuda", torch.float64)
    ins = ssd_inputs(length=0, dtype=torch.float32)
    y, h = ssd(**ins, backend="mamba_ssm")  # an empty sequence never reaches the kernel
    assert y.shape == (2, 4, 0, 3) and torch.equal(h, ins["state"])


BAD = {
    "x": (dict(x=torch.zeros(2, 4, 13)), r"x must be a floating-point \(batch, heads, seqlen, headdim\) tensor; got"),
    "dt": (dict(dt=torch.zeros(2, 4, 12)), r"dt must have shape \(batch, heads, seqlen\) = \(2, 4, 13\); got"),
    "A": (dict(A=torch.zeros(3)), r"A must have shape \(heads,\) = \(4,\); got \(3,\)"),
    "groups": (dict(B=torch.zeros(2, 3, 13, 5)), r"B must have shape \(batch, groups, seqlen, d_state\) = \(2, G, 13, N\)"),
    "C": (dict(C=torch.zeros(2, 2, 13, 4)), r"C must have B's shape \(2, 2, 13, 5\); got \(2, 2, 13, 4\)"),
    "state": (dict(state=torch.zeros(2, 4, 3, 5)), r"state must have shape .* = \(2, 4, 5, 3\); got \(2, 4, 3, 5\)"),
    "positive A": (dict(A=torch.full((4,), 0.5)), r"A must be <= 0 .*; got a maximum of 0.5"),
    "negative dt": (dict(dt=-torch.ones(2, 4, 13)), r"dt must be >= 0 .*; got a minimum of -1"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_naming_the_value(case):
    override, message = BAD[case]
    with pytest.raises(ValueError, match=r"^ssd: " + message) as err:
        ssd(**(ssd_inputs(dtype=torch.float32) | override))
    assert "\n" not in str(err.value)


def test_mamba2_checks_its_ssd_backend():
    with pytest.raises(ValueError, match=r"^mamba2: unknown ssd_backend 'cuda'; choose one of auto, torch, fla, mamba_ssm$"):
        archs.Mamba2(16, ssd_backend="cuda")
