"""The backbone: decode equivalence, init that respects Mamba's, weight-decay groups, config errors."""

import math

import pytest
import torch

from seqmix.archs import MIXERS, LanguageModel, Mamba, ModelConfig, no_weight_decay, preset


@pytest.mark.parametrize("mixer", sorted(MIXERS))
@pytest.mark.parametrize("mlp_ratio", [0.0, 2.0])
def test_model_decode_matches_forward(mixer, mlp_ratio):
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(mixer=mixer, d_model=32, n_layers=2, vocab_size=40, mlp_ratio=mlp_ratio)).double()
    idx = torch.randint(0, 40, (2, 21))
    want = model(idx)
    logits, states = model.prefill(idx[:, :9])
    outs = [logits]
    for t in range(9, 21):
        step_logits, states = model.step(idx[:, t], states)
        outs.append(step_logits[:, None])
    torch.testing.assert_close(torch.cat(outs, 1), want, rtol=1e-5, atol=1e-6)


def test_model_is_causal_end_to_end():
    model = LanguageModel(ModelConfig(mixer="mamba", d_model=32, n_layers=2, vocab_size=40))
    idx = torch.randint(0, 40, (1, 30))
    other = idx.clone()
    other[:, 15:] = (other[:, 15:] + 1) % 40
    torch.testing.assert_close(model(idx)[:, :15], model(other)[:, :15])


def test_mamba_init_survives_the_backbone():
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(mixer="mamba", d_model=64, n_layers=3, mixer_args={"d_state": 8}))
    for mixer in model.mixers:
        assert isinstance(mixer, Mamba)
        torch.testing.assert_close(mixer.A_log, torch.log(torch.arange(1, 9.0)).repeat(128, 1))
        torch.testing.assert_close(mixer.D, torch.ones(128))
        dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
        assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 1e-1 * 1.001
        # log-uniform: the log of dt spreads over the whole interval, not a constant
        assert torch.log(dt).std() > 0.5 * (math.log(0.1) - math.log(0.001)) / math.sqrt(12)
        bound = mixer.dt_rank**-0.5
        assert mixer.dt_proj.weight.abs().max() <= bound


def test_no_weight_decay_groups():
    model = LanguageModel(ModelConfig(mixer="mamba", d_model=32, n_layers=1))
    exempt = {name for name, p in model.named_parameters() if no_weight_decay(name, p)}
    assert exempt == {
        "blocks.0.norm1.weight", "blocks.0.norm2.weight", "norm.weight",
        "blocks.0.mixer.conv1d.bias", "blocks.0.mixer.dt_proj.bias", "blocks.0.mixer.A_log", "blocks.0.mixer.D",
    }


def test_mlp_ratio_zero_drops_the_mlp():
    model = LanguageModel(ModelConfig(mixer="attention", d_model=32, n_layers=2, mlp_ratio=0))
    assert all(block.mlp is None and block.norm2 is None for block in model.blocks)


def test_mixer_factory_config():
    from functools import partial

    model = LanguageModel(ModelConfig(mixer=partial(Mamba, d_state=4), d_model=32))
    assert model.config.mixer_name == "mamba" and model.mixers[0].d_state == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(mixer="transformer"),
            "unknown mixer 'transformer'; registered mixers: attention, deltanet, gated_deltanet, gla, linear_attention, "
            "mamba, mamba2, retnet",
        ),
        (dict(mixer="attention", d_model=30, mixer_args={"n_heads": 4}), "d_model=30 is not divisible by n_heads=4"),
        (dict(mixer="mamba", mixer_args={"d_sate": 4}), "mixer 'mamba' does not take d_sate"),
        (dict(d_model=0), "d_model must be a positive integer, got 0"),
        (dict(vocab_size=-3), "vocab_size must be a positive integer, got -3"),
        (dict(mlp_ratio=-1), "mlp_ratio must be >= 0"),
        (dict(mixer="linear_attention", mixer_args={"feature_map": "softmax"}), "unknown feature_map 'softmax'"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LanguageModel(ModelConfig(**kwargs))


def test_presets():
    assert preset("small").d_model == 256
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
