"""Every linear-recurrence kernel (gated linear attention, the delta rule): its chunked form and its one-token step
against its sequential reference, on the same cases."""

from __future__ import annotations

import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from .recurrence_cases import DELTA, GLA, check_forms_agree, rel_err

WIDTHS = {"gla": (5, 7), "delta_rule": (6, 5)}  # (dk, dv) of the fixed cases
CASES = [(rec, decay) for rec in (GLA, DELTA) for decay in rec.decays]
IDS = [f"{rec.name}-{decay}" for rec, decay in CASES]


@pytest.mark.parametrize(("rec", "decay"), CASES, ids=IDS)
@pytest.mark.parametrize(("length", "chunk"), [(1, 4), (16, 4), (37, 8), (70, None), (5, 64)])
def test_chunked_equals_reference_outputs_state_and_gradients(rec, decay, length, chunk):
    check_forms_agree(rec, 2, 3, length, *WIDTHS[rec.name], decay, chunk)


@pytest.mark.parametrize(("rec", "decay"), CASES, ids=IDS)
@pytest.mark.parametrize(("length", "chunk", "segment"), [(37, 4, 8), (40, 8, 16), (33, 8, 3)])
def test_segments_carry_the_state_exactly(monkeypatch, rec, decay, length, chunk, segment):
    """Long sequences run segment by segment (chunks of a segment together); the seams change nothing."""
    monkeypatch.setattr(importlib.import_module("seqmix.kernels.gated_linear_attention"), "SEGMENT_TOKENS", segment)
    check_forms_agree(rec, 2, 2, length, 4, 3, decay, chunk)


@pytest.mark.parametrize("rec", [GLA, DELTA], ids=lambda rec: rec.name)
@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    b=st.integers(1, 2),
    h=st.integers(1, 3),
    length=st.integers(1, 50),
    dk=st.integers(1, 9),
    dv=st.integers(1, 9),
    chunk=st.sampled_from([1, 3, 8, 16, None]),
    start_state=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_chunked_equals_reference_property(rec, data, b, h, length, dk, dv, chunk, start_state, seed):
    decay = data.draw(st.sampled_from(rec.decays), label="decay")
    check_forms_agree(rec, b, h, length, dk, dv, decay, chunk, start_state, seed)


@pytest.mark.parametrize(("rec", "decay"), CASES, ids=IDS)
@pytest.mark.parametrize("split", [0, 1, 13, 29])
def test_steps_continue_a_chunked_prefill(rec, decay, split):
    ins = rec.inputs(2, 2, 29, 4, 6, decay, seed=3)
    want, want_state = rec.run(rec.reference, ins)
    cut = {n: None if t is None or n == "state" else t[:, :, :split] for n, t in ins.items()}  # the prompt (B, H, split, d)
    o, state = rec.run(rec.chunked, cut | {"state": ins["state"]}, chunk_size=8)
    outs = [o]
    for t in range(split, 29):
        y, state = rec.run_step(ins, t, state)
        outs.append(y[:, :, None])
    assert rel_err(torch.cat(outs, dim=2), want) <= rec.tol and rel_err(state, want_state) <= rec.tol
