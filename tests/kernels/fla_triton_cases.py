"""Our recurrences' `fla` backend against flash-linear-attention's real Triton kernels, fp32, on CPU; run by
test_fla_backend.py in a fresh process with TRITON_INTERPRET=1 (fla_interpret's shims patch triton globally).

The backend is routed to the interpreted kernels by pointing `fla_backend.fla_ops` at fla.ops (it otherwise asks for
CUDA tensors); each call is counted, so that a test also fails when the torch form ran instead, or another fla op.
"""

from __future__ import annotations

import os
import types
from collections import Counter
from functools import partial

import pytest
import torch

from seqmix import archs, kernels
from seqmix.kernels import fla_backend

from .fla_interpret import import_fla
from .recurrence_cases import DELTA, GLA, check_forms_agree, rel_err

OPS = ("chunk_simple_gla", "chunk_gla", "chunk_gated_delta_rule")


@pytest.fixture(scope="module")
def calls():
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.fail("run this file with TRITON_INTERPRET=1 (test_fla_backend.py does)")
    ops = import_fla()
    counted = Counter()

    def counting(name):
        def op(*args, **kwargs):
            counted[name] += 1
            return getattr(ops, name)(*args, **kwargs)

        return op

    route = types.SimpleNamespace(**{name: counting(name) for name in OPS})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fla_backend, "fla_ops", lambda device: route)
        yield counted


# (kernel, decay, the fla op it must call); L = 70 crosses fla's 64-token chunk and is no multiple of it
KERNEL_CASES = [
    (GLA, kernels.gated_linear_attention, None, "chunk_simple_gla"),
    (GLA, kernels.gated_linear_attention, "head", "chunk_simple_gla"),
    (GLA, kernels.gated_linear_attention, "channel", "chunk_gla"),
    (DELTA, kernels.delta_rule, None, "chunk_gated_delta_rule"),
    (DELTA, kernels.delta_rule, "head", "chunk_gated_delta_rule"),
]


@pytest.mark.parametrize("rec, kernel, decay, op", KERNEL_CASES, ids=[f"{c[0].name}-{c[2]}" for c in KERNEL_CASES])
@pytest.mark.parametrize("length, dk, dv", [(70, 16, 8), (23, 12, 6)], ids=str)
def test_fla_backend_matches_the_reference(calls, rec, kernel, decay, op, length, dk, dv):
    """Outputs, final state and the gradients of q, k, v, beta, log_decay and the nonzero start state."""
    before = calls[op]
    check_forms_agree(rec, 2, 2, length, dk, dv, decay, None, seed=length, form=partial(kernel, backend="fla"))
    assert calls[op] == before + 1


MIXERS = [
    ("linear_attention", {}, "chunk_simple_gla"),
    ("retnet", {}, "chunk_simple_gla"),
    ("gla", {}, "chunk_gla"),
    ("deltanet", {}, "chunk_gated_delta_rule"),
    ("gated_deltanet", {"n_heads": 2}, "chunk_gated_delta_rule"),
]


@pytest.mark.parametrize("name, kwargs, op", MIXERS, ids=[c[0] for c in MIXERS])
def test_mixers_pass_the_backend_through(calls, name, kwargs, op):
    """A mixer built with backend='fla' equals its torch twin: forward, every parameter's gradient, prefill state.

    Gradients to 1e-4: Gated DeltaNet's decay parameters (A_log, dt_bias) sum many cancelling terms, where each fp32
    backend is off float64 by itself (measured: torch 3e-5 to 5e-5, fla 1e-5 to 2e-5); everything else is <= 2e-6.
    """
    mixers = []
    for backend in ("torch", "fla"):
        torch.manual_seed(0)
        mixers.append(archs.MIXERS[name](16, backend=backend, **kwargs))
    x = torch.randn(2, 19, 16, generator=torch.Generator().manual_seed(1))
    before = calls[op]
    (want, want_state), (got, got_state) = (m.prefill(x) for m in mixers)
    assert calls[op] == before + 1
    assert rel_err(got, want) <= 1e-5 and rel_err(got_state["S"], want_state["S"]) <= 1e-5
    for y in (want, got):
        y.square().sum().backward()
    for (pname, p), q in zip(mixers[0].named_parameters(), mixers[1].parameters(), strict=True):
        assert rel_err(q.grad, p.grad) <= 1e-4, pname
