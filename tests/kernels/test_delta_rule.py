"""The (gated) delta rule: the chunked WY / UT form and the step against the sequential reference, and bad input."""

from __future__ import annotations

import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqmix import kernels
from seqmix.kernels.delta_rule import delta_rule_chunked, delta_rule_reference, delta_rule_step

from .recurrence_cases import leaves, recurrence_inputs, rel_err

# norm-wise relative error allowed between fp32 forms (measured ~1e-7 to 1e-6 with L2-normalised keys, the regime
# DeltaNet runs in; the recurrence is a contraction only for beta * ||k||^2 <= 2, so raw keys amplify rounding)
TOL = 1e-5
DECAYS = (None, "head")


def _inputs(b, h, length, dk, dv, decay, seed=0, start_state=True, decay_scale=1.0):
    return recurrence_inputs(
        b, h, length, dk, dv, decay, seed=seed, start_state=start_state, beta=True, normalize_k=True,
        decay_scale=decay_scale,
    )


def _run(fn, ins, **kw):
    return fn(ins["q"], ins["k"], ins["v"], ins["beta"], ins["log_decay"], ins["state"], **kw)


def _check_forms_agree(b, h, length, dk, dv, decay, chunk, start_state=True, seed=0, decay_scale=1.0):
    ins = _inputs(b, h, length, dk, dv, decay, seed, start_state, decay_scale)
    ref_in, chk_in = leaves(ins), leaves(ins)
    o_ref, s_ref = _run(delta_rule_reference, ref_in)
    o, s = _run(delta_rule_chunked, chk_in, chunk_size=chunk)
    assert o.shape == (b, h, length, dv) and s.shape == (b, h, dk, dv) and s.dtype == torch.float32
    assert rel_err(o, o_ref) <= TOL and rel_err(s, s_ref) <= TOL
    g = torch.Generator().manual_seed(seed + 1)
    w_o, w_s = torch.randn(o.shape, generator=g), torch.randn(s.shape, generator=g)
    ((o_ref * w_o).sum() + (s_ref * w_s).sum()).backward()
    ((o * w_o).sum() + (s * w_s).sum()).backward()
    for name, t in chk_in.items():
        if t is not None:
            assert rel_err(t.grad, ref_in[name].grad) <= TOL, name


@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize(("length", "chunk"), [(1, 4), (16, 4), (37, 8), (70, None), (5, 64)])
def test_chunked_equals_reference_outputs_state_and_gradients(decay, length, chunk):
    _check_forms_agree(2, 3, length, 6, 5, decay, chunk)


@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize(("length", "chunk", "segment"), [(37, 4, 8), (40, 8, 16), (33, 8, 3)])
def test_segments_carry_the_state_exactly(monkeypatch, decay, length, chunk, segment):
    """Long sequences run segment by segment (chunks of a segment together); the seams change nothing."""
    monkeypatch.setattr(importlib.import_module("seqmix.kernels.gated_linear_attention"), "SEGMENT_TOKENS", segment)
    _check_forms_agree(2, 2, length, 4, 3, decay, chunk)


@settings(max_examples=30, deadline=None)
@given(
    decay=st.sampled_from(DECAYS),
    b=st.integers(1, 2),
    h=st.integers(1, 3),
    length=st.integers(1, 50),
    dk=st.integers(1, 9),
    dv=st.integers(1, 9),
    chunk=st.sampled_from([1, 3, 8, 16, None]),
    start_state=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_chunked_equals_reference_property(decay, b, h, length, dk, dv, chunk, start_state, seed):
    _check_forms_agree(b, h, length, dk, dv, decay, chunk, start_state, seed)


def test_strong_decay_stays_finite_and_exact():
    _check_forms_agree(1, 2, 40, 4, 3, "head", 64, decay_scale=80.0)


@pytest.mark.parametrize("decay", DECAYS)
@pytest.mark.parametrize("split", [0, 1, 13, 29])
def test_steps_continue_a_chunked_prefill(decay, split):
    ins = _inputs(2, 2, 29, 4, 6, decay, seed=3)
    want, want_state = _run(delta_rule_reference, ins)
    cut = {n: None if t is None or n == "state" else t[:, :, :split] for n, t in ins.items()}
    o, state = delta_rule_chunked(cut["q"], cut["k"], cut["v"], cut["beta"], cut["log_decay"], ins["state"], 8)
    outs = [o]
    for t in range(split, 29):
        g = None if ins["log_decay"] is None else ins["log_decay"][:, :, t]
        y, state = delta_rule_step(ins["q"][:, :, t], ins["k"][:, :, t], ins["v"][:, :, t], ins["beta"][:, :, t], g, state)
        outs.append(y[:, :, None])
    assert rel_err(torch.cat(outs, dim=2), want) <= TOL and rel_err(state, want_state) <= TOL


def test_beta_one_on_orthonormal_keys_stores_each_value_exactly():
    """One gradient step with beta = 1 on a unit key replaces what the memory returns for it: k S = v afterwards."""
    dk, dv = 6, 3
    keys = torch.linalg.qr(torch.randn(dk, dk, dtype=torch.float64))[0][:4]  # 4 orthonormal rows
    k = keys[None, None]  # (1, 1, 4, dk)
    v, old = torch.randn(1, 1, 4, dv, dtype=torch.float64), torch.randn(1, 1, dk, dv, dtype=torch.float64)
    _, s = kernels.delta_rule(k, k, v, torch.ones(1, 1, 4, dtype=torch.float64), state=old, chunk_size=2)
    torch.testing.assert_close(k @ s, v, rtol=1e-12, atol=1e-12)
    other = torch.linalg.qr(torch.randn(dk, dk, dtype=torch.float64))[0]
    rest = other - (other @ keys.T) @ keys  # directions orthogonal to every written key are left alone
    torch.testing.assert_close(rest @ s[0, 0], rest @ old[0, 0], rtol=1e-12, atol=1e-12)


def test_beta_zero_writes_nothing_and_decay_only_shrinks():
    ins = _inputs(1, 2, 9, 4, 3, "head", seed=7)
    o, s = kernels.delta_rule(ins["q"], ins["k"], ins["v"], torch.zeros(1, 2, 9), ins["log_decay"], ins["state"])
    total = ins["log_decay"].sum(-1).exp()[..., None, None]
    assert rel_err(s, total * ins["state"]) <= TOL


def test_state_is_fp32_for_low_precision_inputs():
    ins = _inputs(1, 2, 10, 4, 4, "head", seed=5)
    low = {n: t.bfloat16() for n, t in ins.items()}
    o, s = kernels.delta_rule(low["q"], low["k"], low["v"], low["beta"], low["log_decay"])
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32


def test_empty_sequence_returns_the_start_state():
    ins = _inputs(2, 2, 0, 3, 4, "head")
    o, s = _run(kernels.delta_rule, ins)
    assert o.shape == (2, 2, 0, 4) and torch.equal(s, ins["state"])


BAD = {
    "beta shape": (dict(beta=torch.zeros(2, 3, 4)), r"beta must have shape \(batch, heads, seqlen\) = \(2, 3, 5\); got"),
    "beta per channel": (dict(beta=torch.zeros(2, 3, 5, 4)), r"beta must have shape .* = \(2, 3, 5\); got \(2, 3, 5, 4\)"),
    "decay per channel": (dict(log_decay=torch.zeros(2, 3, 5, 4)), r"log_decay must have shape \(2, 3, 5\); got \(2, 3, 5"),
    "positive decay": (dict(log_decay=torch.full((2, 3, 5), 1.5)), r"log_decay must be <= 0 .*; got a maximum of 1.5"),
    "k shape": (dict(k=torch.zeros(2, 3, 5, 3)), r"k must have shape"),
    "state shape": (dict(state=torch.zeros(2, 3, 2, 4)), r"state must have shape \(batch, heads, dk, dv\) = \(2, 3, 4, 2\)"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_naming_the_value(case):
    override, message = BAD[case]
    args = dict(q=torch.zeros(2, 3, 5, 4), k=torch.zeros(2, 3, 5, 4), v=torch.zeros(2, 3, 5, 2), beta=torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"^delta_rule: " + message) as err:
        kernels.delta_rule(**(args | override))
    assert "\n" not in str(err.value)


def test_bf16_autocast_changes_nothing_inside_the_kernel():
    ins = _inputs(1, 2, 20, 4, 3, "head", seed=6)

    def run(enabled: bool):
        xs = leaves(ins)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            o, s = _run(delta_rule_chunked, xs, chunk_size=8)
            y, s2 = delta_rule_step(*(xs[n][:, :, 0] for n in ("q", "k", "v", "beta", "log_decay")), s)
        (o.sum() + s2.sum() + y.sum()).backward()  # outside autocast, as Lightning runs it
        return [o, s2, y] + [t.grad for t in xs.values() if t is not None]

    for got, want in zip(run(True), run(False), strict=True):
        assert got.dtype == torch.float32 and torch.equal(got, want)
