"""RoPE and its evaluation-time scalings against the published formulas, computed independently here."""

import math

import pytest
import torch

from seqmix.archs import LanguageModel, ModelConfig, RopeScaling, rotary, set_rope_scaling

METHODS = ["none", "pi", "ntk", "yarn"]


def scaling(method, factor, original=64):
    return RopeScaling(method, factor, original_max_len=original if method == "yarn" else None)


def ntk_published(head_dim, base, s):
    """NTK-aware: theta_i = (base * s^(d / (d - 2)))^(-2i / d), term by term."""
    b = base * s ** (head_dim / (head_dim - 2))
    return [b ** (-2 * i / head_dim) for i in range(head_dim // 2)]


def yarn_published(head_dim, base, s, original, alpha=1.0, beta=32.0):
    """YaRN (Peng et al. 2023, eqs. 17-19): r = L / lambda, gamma ramps from 0 at r < alpha to 1 at r > beta."""
    out = []
    for i in range(head_dim // 2):
        theta = base ** (-2 * i / head_dim)
        r = original / (2 * math.pi / theta)
        gamma = 0.0 if r < alpha else 1.0 if r > beta else (r - alpha) / (beta - alpha)
        out.append((1 - gamma) * theta / s + gamma * theta)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_factor_one_is_the_identity(method):
    x = torch.randn(2, 3, 40, 16, dtype=torch.float64)
    torch.testing.assert_close(rotary(x, 5, scaling=scaling(method, 1.0)), rotary(x, 5), rtol=0, atol=0)
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(d_model=32, n_layers=2, vocab_size=30)).double()
    idx = torch.randint(0, 30, (2, 50))
    want = model(idx)
    set_rope_scaling(model, scaling(method, 1.0))
    assert torch.equal(model(idx), want)


@pytest.mark.parametrize("factor", [2.0, 4.0, 8.5])
def test_position_interpolation_is_rope_at_positions_over_s(factor):
    x = torch.randn(1, 2, 30, 16, dtype=torch.float64)
    pos = torch.arange(30, dtype=torch.float64)
    torch.testing.assert_close(rotary(x, scaling=RopeScaling("pi", factor)), rotary(x, positions=pos / factor))
    torch.testing.assert_close(rotary(x, 7, scaling=RopeScaling("pi", factor)), rotary(x, positions=(pos + 7) / factor))


@pytest.mark.parametrize(("head_dim", "base", "factor"), [(16, 10000.0, 4.0), (64, 10000.0, 8.0), (8, 500.0, 2.0)])
def test_ntk_matches_the_published_formula(head_dim, base, factor):
    got = RopeScaling("ntk", factor).inv_freq(head_dim, base)
    torch.testing.assert_close(got, torch.tensor(ntk_published(head_dim, base, factor), dtype=torch.float64))
    plain = RopeScaling().inv_freq(head_dim, base)
    assert got[0] == plain[0]  # the highest frequency is kept ...
    assert got[-1] == pytest.approx(plain[-1] / factor)  # ... the lowest is interpolated by exactly s


@pytest.mark.parametrize(("head_dim", "base", "factor", "original"), [(16, 10000.0, 4.0, 64), (64, 10000.0, 8.0, 2048),
                                                                      (32, 10000.0, 16.0, 512)])
def test_yarn_matches_the_published_formula(head_dim, base, factor, original):
    got = RopeScaling("yarn", factor, original_max_len=original).inv_freq(head_dim, base)
    want = yarn_published(head_dim, base, factor, original)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    plain = RopeScaling().inv_freq(head_dim, base)
    turns = original * plain / (2 * math.pi)
    assert torch.equal(got[turns > 32], plain[turns > 32])  # fast dims untouched
    torch.testing.assert_close(got[turns < 1], plain[turns < 1] / factor)  # slow dims fully interpolated
    assert ((turns > 1) & (turns < 32)).any()  # the ramp is exercised


@pytest.mark.parametrize("factor", [2.0, 8.0, 32.0])
def test_yarn_temperature_scales_the_logits_by_one_over_t(factor):
    yarn = RopeScaling("yarn", factor, original_max_len=64)
    m = 0.1 * math.log(factor) + 1  # sqrt(1/t)
    assert yarn.attention_factor == pytest.approx(m)
    q, k = torch.randn(2, 1, 1, 9, 16, dtype=torch.float64)
    rq, rk = rotary(q, scaling=yarn), rotary(k, scaling=yarn)
    angles = torch.arange(9, dtype=torch.float64)[:, None] * yarn.inv_freq(16)  # YaRN's angles, no temperature
    cos, sin = angles.cos(), angles.sin()
    ref = lambda t: torch.cat([t[..., :8] * cos - t[..., 8:] * sin, t[..., :8] * sin + t[..., 8:] * cos], -1)  # noqa: E731
    torch.testing.assert_close(rq @ rk.transpose(-1, -2), m**2 * (ref(q) @ ref(k).transpose(-1, -2)))


@pytest.mark.parametrize("method", ["pi", "ntk", "yarn"])
@pytest.mark.parametrize("mixer", ["attention", "sliding_window"])
def test_scaled_models_still_decode_like_their_forward(method, mixer):
    torch.manual_seed(1)
    args = {"window": 6} if mixer == "sliding_window" else {}
    model = LanguageModel(ModelConfig(mixer=mixer, mixer_args=args, d_model=32, n_layers=2, vocab_size=30)).double()
    idx = torch.randint(0, 30, (2, 20))
    before = model(idx)
    set_rope_scaling(model, scaling(method, 4.0, original=8))
    assert all(m.rope_scaling.method == method for m in model.mixers)
    want = model(idx)
    assert not torch.allclose(want, before)
    logits, states = model.prefill(idx[:, :7])
    outs = [logits] + [model.step(idx[:, t], states)[0][:, None] for t in range(7, 20)]
    torch.testing.assert_close(torch.cat(outs, 1), want)


def test_bad_scalings():
    with pytest.raises(ValueError, match="unknown RoPE scaling method 'linear'; choose one of none, pi, ntk, yarn"):
        RopeScaling("linear", 2.0)
    with pytest.raises(ValueError, match="factor must be a number >= 1, got 0.5"):
        RopeScaling("pi", 0.5)
    with pytest.raises(ValueError, match="'yarn' needs original_max_len"):
        RopeScaling("yarn", 4.0)
    for mixer, args in [("attention", {"position": "alibi"}), ("attention", {"position": "none"}), ("mamba", {})]:
        model = LanguageModel(ModelConfig(mixer=mixer, mixer_args=args, d_model=16, n_layers=1, vocab_size=10))
        with pytest.raises(ValueError, match="RoPE scaling needs a model with RoPE layers; this one has"):
            set_rope_scaling(model, RopeScaling("pi", 2.0))
    tiny = LanguageModel(ModelConfig(d_model=8, n_layers=1, vocab_size=10, mixer_args={"n_heads": 4}))
    with pytest.raises(ValueError, match="NTK-aware RoPE scaling needs a rotary head dim > 2, got 2"):
        set_rope_scaling(tiny, RopeScaling("ntk", 2.0))
    with pytest.raises(ValueError, match="set_rope_scaling takes a RopeScaling"):
        set_rope_scaling(tiny, "yarn")
