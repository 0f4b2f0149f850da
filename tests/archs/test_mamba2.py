"""Mamba2 beyond the contract: its options' checks, the head-dimension rule, FLOPs, state and bf16 autocast."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from seqmix.archs import LanguageModel, Mamba2, ModelConfig
from seqmix.archs.mamba2 import GatedRMSNorm, default_headdim
from seqmix.kernels.gated_linear_attention import gla_reference
from seqmix.kernels.ssd import gla_inputs


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"headdim": 5}, "headdim=5 does not divide d_ssm=32"),
        ({"headdim": 0}, "headdim must be a positive integer, got 0"),
        ({"headdim": 8, "ngroups": 3}, "ngroups=3 does not divide nheads=4"),
        ({"d_ssm": 40}, "d_ssm=40 exceeds d_inner=expand\\*d_model=32"),
        ({"d_state": 0}, "d_state must be a positive integer, got 0"),
        ({"chunk_size": -1}, "chunk_size must be a positive integer, got -1"),
        ({"A_init_range": (0, 16)}, "A_init_range must satisfy 0 < lo <= hi, got \\(0, 16\\)"),
        ({"A_init_range": (4, 2)}, "A_init_range must satisfy 0 < lo <= hi"),
        ({"A_init_range": 3}, "A_init_range must be a pair \\(lo, hi\\) of numbers, got 3"),
        ({"dt_limit": (-1, 1)}, "dt_limit must satisfy 0 <= lo <= hi"),
        ({"dt_min": 0.2, "dt_max": 0.1}, "need 0 < dt_min <= dt_max"),
        ({"conv_init": 0}, "conv_init must be a positive number or None, got 0"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        Mamba2(16, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "d_ssm, ngroups, want", [(128, 1, 64), (64, 1, 64), (32, 1, 32), (96, 1, 48), (200, 1, 50), (74, 1, 37),
                             (128, 4, 32), (16, 2, 8)],
)
def test_default_headdim_is_64_when_it_divides_else_the_largest_divisor_below(d_ssm, ngroups, want):
    assert default_headdim(d_ssm, ngroups) == want
    assert Mamba2(d_ssm // 2, d_state=4, ngroups=ngroups).headdim == want


def test_forward_is_the_sequential_recurrence():
    """The block's SSD through the chunked kernel equals the token-by-token recurrence on the same inputs."""
    torch.manual_seed(0)
    mixer = Mamba2(16, d_state=8, ngroups=2, chunk_size=4).double()
    u = torch.randn(2, 13, 16, dtype=torch.float64)
    z0, x0, z, xbc, dt = mixer._split(mixer.in_proj(u))
    xbc = torch.nn.functional.silu(mixer.conv1d(xbc.transpose(1, 2))[..., :13]).transpose(1, 2)
    x, dt, A, B, C = mixer._ssd_inputs(xbc, dt)
    y, _ = gla_reference(*gla_inputs(x, dt, A, B, C))
    torch.testing.assert_close(mixer(u), mixer._output(y, x, z, z0, x0))


def test_gated_norm_groups_normalise_separately():
    norm = GatedRMSNorm(8, group_size=4)
    y, z = torch.randn(3, 8), torch.full((3, 8), 30.0)  # SiLU(30) ~ 30: the gate scales, the norm removes it
    y[:, 4:] *= 100  # a group's scale must not leak into the other
    out = norm(y, z)
    for g in (slice(0, 4), slice(4, 8)):
        torch.testing.assert_close(out[:, g].square().mean(-1), torch.ones(3), rtol=1e-4, atol=1e-4)


def counted_flops(module, x) -> float:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / (x.shape[0] * x.shape[1])


@pytest.mark.parametrize("length", [1, 16, 100])
@pytest.mark.parametrize("kwargs", [{"d_state": 16}, {"d_state": 8, "ngroups": 2, "chunk_size": 8}], ids=str)
def test_flops_are_the_counted_matmuls_plus_the_elementwise_ssd(length, kwargs):
    mixer = Mamba2(32, **kwargs)
    counted = counted_flops(mixer, torch.randn(2, length, 32))
    assert counted + mixer.ssd_elementwise_flops(length) == pytest.approx(mixer.flops_per_token(length))


def test_state_is_constant_in_context_and_the_officials_size():
    mixer = Mamba2(64, d_state=16, ngroups=2)
    assert mixer.state_bytes(8192) == mixer.state_bytes(512)
    # the official cache: conv (d_ssm + 2 G N) x d_conv (we keep d_conv - 1) and (H, P, N) fp32
    assert mixer.state_bytes(1) == (128 + 2 * 2 * 16) * 3 * 4 + 128 * 16 * 4


def test_under_bf16_autocast_state_and_decay_stay_fp32():
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(mixer="mamba2", d_model=32, n_layers=2, vocab_size=50, mixer_args={"d_state": 8}))
    ids = torch.randint(0, 50, (2, 12))
    want = model(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
        _, states = model.prefill(ids[:, :8])
        for t in range(8, 12):
            step_logits, states = model.step(ids[:, t], states)
    assert all(t.dtype == torch.float32 for s in states for t in s.values())
    assert all(m.A_log.dtype == torch.float32 for m in model.mixers)
    tol = 0.03 * want.abs().max()
    assert (logits.float() - want).abs().max() <= tol and (step_logits.float() - want[:, -1]).abs().max() <= tol
