"""RetNet, GLA, DeltaNet and Gated DeltaNet: each layer against an explicit formula, its published initialisation,
option checks, FLOPs against torch's counter, and a decode state that does not grow."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from seqmix.archs import MIXERS, no_weight_decay
from seqmix.archs.attention import rotary
from seqmix.archs.recurrent import merge_heads, split_heads

RECURRENT = ["retnet", "gla", "deltanet", "gated_deltanet"]


def _heads(mixer, x):
    """q, k, v (B, H, L, d) straight from the layer's projection (and conv), before any feature map."""
    qkv = mixer.qkv(x)
    if mixer.conv is not None:
        qkv = mixer.conv(qkv, mixer.conv.empty_window(x.shape[0]))[0]
    q, k, v = qkv.split([mixer.key_dim, mixer.key_dim, mixer.value_dim], dim=-1)
    return (split_heads(t, mixer.n_heads) for t in (q, k, v))


def _finish(mixer, x, o):
    gate = split_heads(mixer.g_proj(x), mixer.n_heads) if mixer.g_proj is not None else None
    return mixer.o_proj(merge_heads(mixer.norm(o, gate)))


@pytest.mark.parametrize("length", [1, 9, 70])
def test_retnet_is_parallel_retention(length):
    """o_t = sum_{s<=t} gamma_h^(t-s) (q_t . k_s) v_s with rotary q, k and q scaled by dk^-1/2 (the paper's parallel form)."""
    torch.manual_seed(0)
    mixer = MIXERS["retnet"](32, n_heads=4).double()
    x = torch.randn(2, length, 32, dtype=torch.float64)
    gammas = 1 - 2.0 ** (-5 - torch.arange(4, dtype=torch.float64))
    torch.testing.assert_close(mixer.log_gamma.double().exp(), gammas, rtol=1e-6, atol=0)
    q, k, v = _heads(mixer, x)
    q, k = rotary(q) / math.sqrt(mixer.head_k), rotary(k)
    t = torch.arange(length, dtype=torch.float64)
    gap = t[:, None] - t[None, :]
    decay = torch.where(gap >= 0, gammas[:, None, None] ** gap.clamp(min=0), 0.0)  # (H, L, L)
    o = ((q @ k.transpose(-1, -2)) * decay) @ v
    torch.testing.assert_close(mixer(x), _finish(mixer, x, o), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("length", [1, 9, 70])
def test_gla_is_gated_linear_attention(length):
    """o_t = sum_{s<=t} sum_c q_tc k_sc prod_{r=s+1..t} alpha_rc v_s, alpha = sigmoid(W2 W1 x + b)^(1/16)."""
    torch.manual_seed(1)
    mixer = MIXERS["gla"](32).double()
    x = torch.randn(2, length, 32, dtype=torch.float64)
    q, k, v = _heads(mixer, x)
    alpha = torch.sigmoid(split_heads(mixer.gk_up(mixer.gk_down(x)), mixer.n_heads)) ** (1 / 16)  # (B, H, L, dk)
    o = torch.zeros_like(v)
    for t in range(length):
        for s in range(t + 1):
            carry = alpha[:, :, s + 1 : t + 1].prod(dim=2)  # (B, H, dk)
            weight = (q[:, :, t] * k[:, :, s] * carry).sum(-1) / math.sqrt(mixer.head_k)  # (B, H)
            o[:, :, t] += weight[..., None] * v[:, :, s]
    torch.testing.assert_close(mixer(x), _finish(mixer, x, o), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["deltanet", "gated_deltanet"])
@pytest.mark.parametrize("conv", [True, False])
def test_delta_mixers_feed_the_kernel_what_the_papers_say(name, conv):
    """Unit q and k (q then scaled by dk^-1/2), SiLU features, beta = sigmoid(w_b x) in (0, 1), and for Gated
    DeltaNet log alpha = -exp(A_log) softplus(w_a x + dt_bias) <= 0."""
    torch.manual_seed(2)
    mixer = MIXERS[name](48, **({} if conv else {"conv_size": None})).double()
    x = torch.randn(2, 11, 48, dtype=torch.float64)
    raw_q, raw_k, raw_v = _heads(mixer, x)
    q, k, v, log_decay, beta = mixer._recurrence_inputs(x, raw_q, raw_k, raw_v, 0)
    torch.testing.assert_close(q.norm(dim=-1), torch.full(q.shape[:3], mixer.head_k**-0.5, dtype=torch.float64))
    torch.testing.assert_close(k.norm(dim=-1), torch.ones(k.shape[:3], dtype=torch.float64))
    torch.testing.assert_close(v, raw_v if conv else F.silu(raw_v))
    torch.testing.assert_close(beta, torch.sigmoid(mixer.b_proj(x)).transpose(1, 2))
    if name == "deltanet":
        assert log_decay is None
    else:
        want = -mixer.A_log.exp() * F.softplus(mixer.a_proj(x) + mixer.dt_bias)  # (B, L, H)
        torch.testing.assert_close(log_decay, want.transpose(1, 2).to(log_decay.dtype))
        assert (log_decay <= 0).all()


def test_gated_deltanet_initialisation():
    torch.manual_seed(3)
    mixer = MIXERS["gated_deltanet"](256, n_heads=64)
    A = mixer.A_log.exp()
    assert mixer.A_log.dtype == torch.float32 and ((A > 0) & (A <= 16)).all() and A.max() > 8 > A.min()
    dt = F.softplus(mixer.dt_bias.detach())
    assert ((dt >= 1e-3 * 0.999) & (dt <= 0.1 * 1.001)).all()
    assert math.log(dt.max() / dt.min()) > 2  # log-uniform over two decades, not one value
    for name, p in (("A_log", mixer.A_log), ("dt_bias", mixer.dt_bias)):
        assert no_weight_decay(name, p) and p._seqmix_keep_init
    assert (mixer.key_dim, mixer.head_v) == (192, 2 * mixer.head_k)  # 0.75 d_model of keys, values twice as wide


def test_defaults_follow_the_published_layers():
    retnet, gla, deltanet, gdn = (MIXERS[n](96) for n in RECURRENT)
    assert (retnet.key_dim, retnet.value_dim, retnet.g_proj is not None, retnet.conv) == (96, 192, True, None)
    assert (gla.key_dim, gla.value_dim, gla.gate_low_rank_dim, gla.gate_logit_normalizer) == (48, 96, 16, 16.0)
    assert gla.conv is None and gla.g_proj is not None
    assert (deltanet.key_dim, deltanet.value_dim, deltanet.conv.kernel_size, deltanet.g_proj) == (96, 96, 4, None)
    assert (gdn.n_heads, gdn.key_dim, gdn.value_dim, gdn.conv.kernel_size, gdn.g_proj is not None) == (6, 72, 144, 4, True)


BAD_OPTIONS = [
    ("retnet", 16, {"n_heads": 3}, r"retnet: d_model=16 \* expand_k=1.0 = 16 must be a whole multiple of n_heads=3"),
    ("retnet", 24, {"expand_k": 0.5}, "retnet: rotary embeddings need an even key head dim; .* = 3"),
    ("retnet", 16, {"chunk_size": 0}, "chunk_size must be a positive integer, got 0"),
    ("gla", 16, {"conv_size": 0}, r"gla: conv_size must be a positive integer or None \(no short conv\), got 0"),
    ("gla", 16, {"gate_logit_normalizer": 0}, "gla: gate_logit_normalizer must be a positive number, got 0"),
    ("gla", 16, {"gate_low_rank_dim": 0}, "gate_low_rank_dim must be a positive integer, got 0"),
    ("deltanet", 16, {"expand_v": 0}, "deltanet: expand_v must be a positive number, got 0"),
    ("deltanet", 16, {"expand_v": 0.3}, "deltanet: d_model=16 \\* expand_v=0.3 = 4.8 must be a whole multiple"),
    ("gated_deltanet", 32, {"dt_min": 0.2}, "gated_deltanet: need 0 < dt_min <= dt_max, got dt_min=0.2, dt_max=0.1"),
    ("gated_deltanet", 32, {"expand_v": 0.3}, r"gated_deltanet: head_k=4 \* expand_v=0.3 = 1.2 must be a whole number"),
]


@pytest.mark.parametrize(("name", "d_model", "options", "message"), BAD_OPTIONS)
def test_bad_options_are_one_line_errors(name, d_model, options, message):
    with pytest.raises(ValueError, match=message) as err:
        MIXERS[name](d_model, **options)
    assert "\n" not in str(err.value)


def _uncounted(mixer, length: int) -> float:
    """FLOPs per token the counter cannot see: rotary (RetNet) and the unit-triangular solve (delta rule)."""
    if mixer.name == "retnet":
        return 12 * mixer.key_dim
    if mixer.delta:
        c = mixer.chunk_size or 64
        padded = -(-length // c) * c
        return mixer.n_heads * c * (mixer.head_v + mixer.head_k) * padded / length
    return 0.0


@pytest.mark.parametrize("name", RECURRENT)
@pytest.mark.parametrize(("length", "chunk"), [(1, None), (16, 8), (100, None)])
def test_flops_match_counter(name, length, chunk):
    mixer = MIXERS[name](48, chunk_size=chunk)
    x = torch.randn(2, length, 48)
    with FlopCounterMode(display=False) as counter:
        mixer(x)
    counted = counter.get_total_flops() / (2 * length)
    assert counted + _uncounted(mixer, length) == pytest.approx(mixer.flops_per_token(length))


@pytest.mark.parametrize("name", RECURRENT)
def test_decode_state_does_not_grow(name):
    mixer = MIXERS[name](48)
    assert mixer.state_bytes(8192) == mixer.state_bytes(512) == mixer.state_bytes(1)
    _, state = mixer.prefill(torch.randn(1, 5, 48))
    assert state["S"].dtype == torch.float32 and state["S"].shape == (1, mixer.n_heads, mixer.head_k, mixer.head_v)


@pytest.mark.parametrize("name", RECURRENT)
def test_bf16_autocast_keeps_the_state_fp32_and_the_output_close(name):
    torch.manual_seed(4)
    mixer = MIXERS[name](48)
    x = torch.randn(2, 70, 48)
    want = mixer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = mixer.prefill(x)
        step, state = mixer.step(x[:, 0], state)
    assert state["S"].dtype == torch.float32 and y.dtype == step.dtype == torch.bfloat16
    assert (y.float() - want).abs().max() <= 0.03 * want.abs().max()  # bf16 projections around an fp32 recurrence
