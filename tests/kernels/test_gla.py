"""Gated linear attention: the chunked form and the step against the sequential reference, and bad input."""

from __future__ import annotations

import pytest
import torch

from seqmix import kernels
from seqmix.kernels.gated_linear_attention import gla_reference, gla_step

from .recurrence_cases import GLA, check_forms_agree, leaves, recurrence_inputs, rel_err

TOL = GLA.tol  # see recurrence_cases (the chunked form, step and segments are checked in test_recurrence_forms)


@pytest.mark.parametrize("decay", ["head", "channel"])
def test_strong_decay_stays_finite_and_exact(decay):
    """Within-chunk decays down to exp(-64 * 40): no exp(+large) is ever formed."""
    check_forms_agree(GLA, 1, 2, 40, 4, 3, decay, 64, decay_scale=80.0)


def test_per_channel_chunks_with_wide_and_narrow_decay_spans():
    """Chunks whose decay spans more than the factorised form allows take the exact (C, C, dk) path, the rest not;
    one call mixing both (a head with near-zero gates beside ordinary ones) still equals the reference."""
    ins = recurrence_inputs(2, 3, 45, 4, 3, "channel", seed=9)
    ld = ins["log_decay"].clone()
    ld[:, 1, 10:20] *= 40.0  # head 1: ~-20 per step for ten steps, spans well over 2 * FACTOR_LIMIT
    ld[0, 2, :, 0] = -5.0  # one channel of one sequence: a span of 5 * 16 = 80 in every chunk of 16
    ins["log_decay"] = ld
    ref_in, chk_in = leaves(ins), leaves(ins)
    o_ref, s_ref = GLA.run(gla_reference, ref_in)
    o, s = GLA.run(GLA.chunked, chk_in, chunk_size=16)
    assert rel_err(o, o_ref) <= TOL and rel_err(s, s_ref) <= TOL
    (o_ref.square().sum() + s_ref.sum()).backward()
    (o.square().sum() + s.sum()).backward()
    for name, t in chk_in.items():
        if t is not None:
            assert rel_err(t.grad, ref_in[name].grad) <= TOL, name


def test_no_decay_is_plain_causal_linear_attention():
    """o_t = q_t (S_0 + sum_{s<=t} k_s^T v_s), written as one masked matrix product."""
    ins = recurrence_inputs(2, 2, 23, 4, 5, None, seed=4, dtype=torch.float64)
    q, k, v, s0 = ins["q"], ins["k"], ins["v"], ins["state"]
    scores = (q @ k.transpose(-1, -2)).tril()
    want = scores @ v + q @ s0
    o, s = kernels.gated_linear_attention(q, k, v, state=s0, chunk_size=8)
    torch.testing.assert_close(o, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s, s0 + k.transpose(-1, -2) @ v, rtol=1e-12, atol=1e-12)


def test_state_is_fp32_for_low_precision_inputs_and_float64_stays_float64():
    ins = recurrence_inputs(1, 2, 10, 4, 4, "head", seed=5, dtype=torch.bfloat16)
    o, s = kernels.gated_linear_attention(ins["q"], ins["k"], ins["v"], ins["log_decay"])
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
    o_ref, s_ref = gla_reference(*(ins[n].float() for n in ("q", "k", "v", "log_decay")))
    assert rel_err(s, s_ref) <= TOL
    ins64 = recurrence_inputs(1, 2, 10, 4, 4, "channel", seed=5, dtype=torch.float64)
    o, s = kernels.gated_linear_attention(ins64["q"], ins64["k"], ins64["v"], ins64["log_decay"], ins64["state"])
    assert o.dtype == s.dtype == torch.float64


def test_empty_sequence_returns_the_start_state():
    ins = recurrence_inputs(2, 2, 0, 3, 4, "channel")
    o, s = kernels.gated_linear_attention(ins["q"], ins["k"], ins["v"], ins["log_decay"], ins["state"])
    assert o.shape == (2, 2, 0, 4) and torch.equal(s, ins["state"])


BAD = {
    "q rank": (dict(q=torch.zeros(2, 3, 5)), r"q must have shape \(batch, heads, seqlen, dk\); got \(2, 3, 5\)"),
    "k shape": (dict(k=torch.zeros(2, 3, 5, 3)), r"k must have shape \(batch, heads, seqlen, dk\) = \(2, 3, 5, 4\)"),
    "v length": (dict(v=torch.zeros(2, 3, 6, 2)), r"v must have shape .* = \(2, 3, 5\) \+ \(dv,\); got \(2, 3, 6, 2\)"),
    "decay shape": (dict(log_decay=torch.zeros(2, 3, 4)), r"log_decay must have shape \(2, 3, 5\) or \(2, 3, 5, 4\); got"),
    "decay channels": (dict(log_decay=torch.zeros(2, 3, 5, 2)), r"log_decay must have shape .*; got \(2, 3, 5, 2\)"),
    "positive decay": (dict(log_decay=torch.full((2, 3, 5), 0.25)), r"log_decay must be <= 0 .*; got a maximum of 0.25"),
    "nan decay": (dict(log_decay=torch.full((2, 3, 5), float("nan"))), r"log_decay must be <= 0 .*; got a maximum of nan"),
    "state shape": (dict(state=torch.zeros(2, 3, 4, 3)), r"state must have shape \(batch, heads, dk, dv\) = \(2, 3, 4, 2\)"),
    "chunk": (dict(chunk_size=0), r"chunk_size must be a positive integer or None; got 0"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_naming_the_value(case):
    override, message = BAD[case]
    args = dict(q=torch.zeros(2, 3, 5, 4), k=torch.zeros(2, 3, 5, 4), v=torch.zeros(2, 3, 5, 2)) | override
    with pytest.raises(ValueError, match=r"^gated_linear_attention: " + message) as err:
        kernels.gated_linear_attention(**args)
    assert "\n" not in str(err.value)


def test_bf16_autocast_changes_nothing_inside_the_kernel():
    """A forward under CPU bf16 autocast (chunked form, step) and its gradients are bit-identical to fp32."""
    ins = recurrence_inputs(1, 2, 20, 4, 3, "channel", seed=6)

    def run(enabled: bool):
        xs = leaves(ins)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            o, s = GLA.run(GLA.chunked, xs, chunk_size=8)
            y, s2 = gla_step(xs["q"][:, :, 0], xs["k"][:, :, 0], xs["v"][:, :, 0], xs["log_decay"][:, :, 0], s)
        (o.sum() + s2.sum() + y.sum()).backward()  # outside autocast, as Lightning runs it
        return [o, s2, y] + [t.grad for t in xs.values() if t is not None]

    for got, want in zip(run(True), run(False), strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, want)
