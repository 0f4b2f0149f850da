"""Our Mamba2 against the official block running its real Triton kernels; run by test_mamba2_official.py in a fresh
process with TRITON_INTERPRET=1 (the shims in mamba2_official.import_official patch triton and torch.cuda globally).

Official code that runs here: `mamba_chunk_scan_combined` (SSD forward, with its final state for prefill),
`RMSNormGated` (the Triton gated norm) and `selective_state_update` (the Triton decode step, which handles ngroups > 1).
"""

from __future__ import annotations

import os
import types

import pytest
import torch

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
