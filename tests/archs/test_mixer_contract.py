"""The mixer contract, checked for every registered mixer automatically: a new mixer gets these for free."""

# The SSM state accumulates in fp32 by design, so float64 runs agree to fp32 precision; a bug shows as O(1) errors.

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqmix.archs import MIXERS

from .mixer_cases import CASES, build

SHAPES = [(1, 1, 16), (2, 7, 16), (3, 33, 32), (2, 70, 24)]


def test_every_registered_mixer_is_covered():
    assert set(MIXERS) <= set(CASES)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_shape_and_causality(case, shape):
    b, length, d = shape
    torch.manual_seed(0)
    mixer = build(case, d).double()
    x = torch.randn(b, length, d, dtype=torch.float64)
    y = mixer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    for t in {0, length // 2, length - 1}:
        x2 = x.clone()
        x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :]) * 3
        y2 = mixer(x2)
        torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=1e-6, atol=1e-6)
        if t + 1 < length:  # the perturbation must be visible later, or this check proves nothing
            assert not torch.allclose(y2[:, t + 1 :], y[:, t + 1 :])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_decode_equivalence(case, shape):
    b, length, d = shape
    torch.manual_seed(1)
    mixer = build(case, d).double()
    x = torch.randn(b, length, d, dtype=torch.float64)
    want = mixer(x)
    for split in {0, 1, length // 2, length}:
        head, state = mixer.prefill(x[:, :split])
        outs = [head]
        for t in range(split, length):
            y, state = mixer.step(x[:, t], state)
            assert y.shape == (b, d)
            outs.append(y[:, None])
        torch.testing.assert_close(torch.cat(outs, dim=1), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_step_from_empty_state_matches_forward(case):
    torch.manual_seed(2)
    mixer = build(case, 16).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    state = mixer.init_state(2, max_len=4)  # attention's cache must grow past max_len
    ys = []
    for t in range(9):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), mixer(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_gradients_reach_every_parameter(case):
    torch.manual_seed(3)
    mixer = build(case, 16)
    x = torch.randn(2, 11, 16, requires_grad=True)
    mixer(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in mixer.named_parameters():
        assert p.grad is not None, f"{case}: no gradient for {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{case}: zero gradient for {name}"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("d_model", [16, 24, 64])
def test_param_count_is_numel(case, d_model):
    mixer = build(case, d_model)
    assert mixer.param_count() == sum(p.numel() for p in mixer.parameters())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("length", [1, 5, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_bytes_are_what_the_state_holds(case, length, dtype):
    mixer = build(case, 32).to(dtype)
    _, state = mixer.prefill(torch.randn(3, length, 32, dtype=dtype))
    held = sum(t.numel() * t.element_size() for t in state.values())
    assert mixer.state_bytes(length, batch=3, dtype=dtype) == held


def test_state_growth_attention_linear_others_constant():
    grows = {name: build(name, 32).state_bytes(8192) / build(name, 32).state_bytes(512) for name in MIXERS}
    assert grows["attention"] == pytest.approx(16, rel=0.01)
    assert grows["linear_attention"] == 1.0 and grows["mamba"] == 1.0


@settings(max_examples=25, deadline=None)
@given(
    case=st.sampled_from(sorted(CASES)),
    b=st.integers(1, 3),
    length=st.integers(1, 40),
    heads_width=st.sampled_from([8, 16, 24]),
    split=st.floats(0, 1),
)
def test_decode_equivalence_property(case, b, length, heads_width, split):
    torch.manual_seed(length)
    mixer = build(case, heads_width).double()
    x = torch.randn(b, length, heads_width, dtype=torch.float64)
    cut = round(split * length)
    head, state = mixer.prefill(x[:, :cut])
    outs = [head] + [mixer.step(x[:, t], state)[0][:, None] for t in range(cut, length)]
    torch.testing.assert_close(torch.cat(outs, 1), mixer(x), rtol=1e-5, atol=1e-6)
