"""Sliding-window attention: the banded form against a full masked reference, ring-buffer decode, constant state."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from seqmix.archs import Attention, SlidingWindow
from seqmix.archs.attention import alibi_slopes
from seqmix.archs.sliding_window import banded_attention


def band_mask(length: int, window: int, n_sinks: int) -> torch.Tensor:
    """(L, L) bool: query i sees key j iff j <= i and (i - j < window or j < n_sinks), by loops."""
    mask = torch.zeros(length, length, dtype=torch.bool)
    for i in range(length):
        for j in range(i + 1):
            mask[i, j] = i - j < window or j < n_sinks
    return mask


def masked_reference(q, k, v, mask, slopes=None):
    """Full O(L^2) attention with the key/value heads repeated and an explicit mask (and ALiBi bias)."""
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    bias = torch.zeros(mask.shape, dtype=q.dtype).masked_fill(~mask, float("-inf"))
    if slopes is not None:
        pos = torch.arange(mask.shape[0], dtype=q.dtype)
        bias = bias - slopes.to(q.dtype).view(-1, 1, 1) * (pos[:, None] - pos[None, :])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 40),
    window=st.integers(1, 12),
    n_sinks=st.integers(0, 5),
    heads=st.sampled_from([(1, 1), (2, 1), (4, 2), (3, 3)]),
    alibi=st.booleans(),
)
def test_banded_attention_equals_the_masked_reference(length, window, n_sinks, heads, alibi):
    torch.manual_seed(length * 100 + window)
    h, hkv = heads
    q = torch.randn(2, h, length, 4, dtype=torch.float64)
    k, v = torch.randn(2, 2, hkv, length, 4, dtype=torch.float64)
    slopes = alibi_slopes(h) if alibi else None
    got = banded_attention(q, k, v, window, n_sinks, slopes)
    torch.testing.assert_close(got, masked_reference(q, k, v, band_mask(length, window, n_sinks), slopes))


def test_a_window_as_long_as_the_sequence_is_full_attention():
    torch.manual_seed(0)
    sw = SlidingWindow(32, window=20).double()
    full = Attention(32).double()
    full.load_state_dict(sw.state_dict())
    x = torch.randn(2, 20, 32, dtype=torch.float64)
    torch.testing.assert_close(sw(x), full(x))
    narrow = SlidingWindow(32, window=5).double()
    narrow.load_state_dict(sw.state_dict())
    assert torch.allclose(narrow(x)[:, :5], full(x)[:, :5]) and not torch.allclose(narrow(x)[:, 5:], full(x)[:, 5:])


@pytest.mark.parametrize(("window", "n_sinks"), [(4, 0), (4, 2), (1, 1), (6, 3)])
def test_decode_past_the_window_wraps_the_ring_buffer(window, n_sinks):
    torch.manual_seed(1)
    mixer = SlidingWindow(16, n_heads=2, window=window, n_sinks=n_sinks).double()
    x = torch.randn(2, 37, 16, dtype=torch.float64)
    want = mixer(x)
    for prompt in (0, 3, 11, 37):  # prompts shorter and longer than the window; generations wrap several times
        y, state = mixer.prefill(x[:, :prompt])
        outs = [y]
        for t in range(prompt, 37):
            out, state = mixer.step(x[:, t], state)
            outs.append(out[:, None])
            assert state["k"].shape[2] == window + n_sinks
        torch.testing.assert_close(torch.cat(outs, 1), want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_bytes_are_the_same_at_every_length(dtype):
    mixer = SlidingWindow(32, n_heads=4, n_kv_heads=2, window=8, n_sinks=2).to(dtype)
    sizes = set()
    for length in (1, 3, 10, 64, 300):
        _, state = mixer.prefill(torch.randn(2, length, 32, dtype=dtype))
        held = sum(t.numel() * t.element_size() for t in state.values())
        assert mixer.state_bytes(length, batch=2, dtype=dtype) == held
        sizes.add(held)
    assert sizes == {2 * 2 * (8 + 2) * 16 * dtype.itemsize + 8}  # K and V: batch x kv heads x slots x head dim
    assert mixer.state_bytes(10**6, batch=2, dtype=dtype) in sizes


@pytest.mark.parametrize("length", [1, 7, 40, 100])
@pytest.mark.parametrize(("window", "n_sinks"), [(8, 0), (8, 3), (64, 1)])
def test_flops_match_the_counter_and_stay_flat_in_length(length, window, n_sinks):
    # on CPU tensors the counter cannot see inside SDPA; on the meta device it counts SDPA's matmuls
    with torch.device("meta"):
        mixer, x = SlidingWindow(32, window=window, n_sinks=n_sinks), torch.randn(2, length, 32)
    with FlopCounterMode(display=False) as counter:
        mixer(x)
    assert counter.get_total_flops() / (2 * length) == pytest.approx(mixer.flops_per_token(length))
    # O(L * W): per-token work is bounded by the window, unlike full attention's
    bound = 2 * mixer.param_count() + 4 * 32 * (2 * window + n_sinks)
    assert mixer.flops_per_token(100_000) <= bound < Attention(32).flops_per_token(100_000) / 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window must be a positive integer, got 0"),
        ({"n_sinks": -1}, "n_sinks must be a non-negative integer .*, got -1"),
        ({"n_heads": 4, "n_kv_heads": 3}, "sliding_window: n_heads=4 is not divisible by n_kv_heads=3"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SlidingWindow(24, **kwargs)
