"""Our Mamba2 against the official block running its real Triton kernels; run by test_mamba2_official.py in a fresh
process with TRITON_INTERPRET=1 (the shims in mamba2_official.import_official patch triton and torch.cuda globally).

Official code that runs here: `mamba_chunk_scan_combined` (SSD forward, with its final state for prefill),
`RMSNormGated` (the Triton gated norm) and `selective_state_update` (the Triton decode step, which handles ngroups > 1).
Also our SSD's `mamba_ssm` backend (kernels.ssd.mamba_ssm_ssd, its mapping onto `mamba_chunk_scan_combined`, forward
and backward) against the sequential recurrence and, inside our block, against our torch SSD.
"""

from __future__ import annotations

import importlib
import os
import types

import pytest
import torch

from seqmix.archs import Mamba2
from seqmix.kernels import ssd
from seqmix.kernels.gated_linear_attention import gla_reference
from seqmix.kernels.ssd import gla_inputs

from ..kernels.recurrence_cases import leaves, rel_err, ssd_inputs
from .mamba2_official import import_official, official_ssm_state, perturbed_twin

CASES = [
    (16, {"d_state": 8, "headdim": 4, "ngroups": 2}, 10),
    (24, {"d_state": 4, "headdim": 8, "d_conv": 2, "expand": 1, "bias": True, "dt_limit": (0.01, 0.05)}, 7),
    (16, {"d_state": 8, "headdim": 4, "d_ssm": 16, "norm_before_gate": True}, 6),
]


@pytest.fixture(scope="module")
def official():
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.fail("run this file with TRITON_INTERPRET=1 (test_mamba2_official.py does)")
    return import_official(triton_interpret=True)


@pytest.mark.parametrize("d_model, kwargs, length", CASES, ids=str)
def test_forward_prefill_and_decode_match_official_triton(official, d_model, kwargs, length):
    ours, theirs = perturbed_twin(official, d_model, **kwargs)
    x = torch.randn(2, length, d_model)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)

    split = length // 2
    cache = types.SimpleNamespace(seqlen_offset=0, key_value_memory_dict={})
    want = theirs(x[:, :split], inference_params=cache)
    got, state = ours.prefill(x[:, :split])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    conv_state, ssm_state = cache.key_value_memory_dict[0]
    torch.testing.assert_close(state["conv"], conv_state[..., 1:], rtol=0, atol=0)
    torch.testing.assert_close(official_ssm_state(state), ssm_state, rtol=1e-4, atol=1e-5)
    if "dt_limit" in kwargs:  # the official step does not clamp dt (its forward does); ours clamps in both
        return
    for t in range(split, length):
        want, conv_state, ssm_state = theirs.step(x[:, t : t + 1], conv_state, ssm_state)
        got, state = ours.step(x[:, t], state)
        torch.testing.assert_close(got, want[:, 0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(official_ssm_state(state), ssm_state, rtol=1e-4, atol=1e-5)


@pytest.fixture
def mamba_ssm_calls(official, monkeypatch):
    """kernels.ssd's mamba_ssm backend on CPU tensors, running the official (interpreted) kernel; counts the calls."""
    import mamba_ssm.ops.triton.ssd_combined as combined

    calls = []

    def scan(*args, **kwargs):
        calls.append(1)
        return combined.mamba_chunk_scan_combined(*args, **kwargs)

    monkeypatch.setattr(importlib.import_module("seqmix.kernels.ssd"), "mamba_chunk_scan", lambda device: scan)
    return calls


@pytest.mark.parametrize("chunk, length", [(16, 37), (64, 70)], ids=str)
def test_ssd_on_mamba_ssm_is_the_recurrence(mamba_ssm_calls, chunk, length):
    """y, the final state and the gradients of x, dt, A, B, C and the nonzero start state, all to 1e-5."""
    ins = ssd_inputs(2, 4, 2, length, 8, 6, seed=length, dtype=torch.float32)
    ref_in, got_in = leaves(ins), leaves(ins)
    want_y, want_h = gla_reference(*gla_inputs(*(ref_in[n] for n in ("x", "dt", "A", "B", "C"))), ref_in["state"])
    y, h = ssd(**got_in, chunk_size=chunk, backend="mamba_ssm")
    assert len(mamba_ssm_calls) == 1 and h.dtype == torch.float32
    assert rel_err(y, want_y) <= 1e-5 and rel_err(h, want_h) <= 1e-5
    g = torch.Generator().manual_seed(1)
    w_y, w_h = torch.randn(y.shape, generator=g), torch.randn(h.shape, generator=g)
    for out, state in ((want_y, want_h), (y, h)):
        ((out * w_y).sum() + (state * w_h).sum()).backward()
    for name, t in got_in.items():
        assert rel_err(t.grad, ref_in[name].grad) <= 1e-5, name


def test_block_on_the_mamba_ssm_ssd_equals_the_torch_ssd(mamba_ssm_calls):
    """Mamba2(ssd_backend='mamba_ssm') and its torch twin: prefill output and state, every parameter's gradient."""
    blocks = []
    for backend in ("torch", "mamba_ssm"):
        torch.manual_seed(0)
        blocks.append(Mamba2(16, d_state=8, headdim=4, ngroups=2, chunk_size=16, ssd_backend=backend))
    x = torch.randn(2, 23, 16, generator=torch.Generator().manual_seed(2))
    (want, want_state), (got, got_state) = (m.prefill(x) for m in blocks)
    assert len(mamba_ssm_calls) == 1
    assert rel_err(got, want) <= 1e-5 and rel_err(got_state["ssm"], want_state["ssm"]) <= 1e-5
    for y in (want, got):
        y.square().sum().backward()
    for (name, p), q in zip(blocks[0].named_parameters(), blocks[1].parameters(), strict=True):
        assert rel_err(q.grad, p.grad) <= 1e-5, name
