"""Size matching: every mixer's model lands within 2% of the budget, hence of each other."""

import pytest
import torch

from seqmix.archs import MIXERS, ModelConfig, match_params, match_width, non_embedding_params


@pytest.mark.parametrize("budget", [100_000, 3_000_000, 100_000_000])
@pytest.mark.parametrize("n_layers", [2, 6])
def test_match_params_within_two_percent(budget, n_layers):
    arms = {name: {} for name in MIXERS} | {  # sliding_window is registered, hence in MIXERS
        "gqa": {"n_heads": 8, "n_kv_heads": 2},
        "mqa": {"n_heads": 4, "n_kv_heads": 1},
    }
    counts = {}
    for name, args in arms.items():
        mixer = name if name in MIXERS else "attention"
        cfg = match_params(ModelConfig(mixer=mixer, mixer_args=args, n_layers=n_layers), budget)
        counts[name] = non_embedding_params(cfg)
        assert abs(counts[name] - budget) <= 0.02 * budget, (name, counts[name])
    assert max(counts.values()) <= 1.02 * min(counts.values())


def test_the_recurrent_family_is_sized_like_every_mixer():
    """test_match_params_within_two_percent runs over MIXERS; the recurrent family must be among them, and each
    member's accepted widths respect its head constraints (RetNet: even rotary head dim; Gated DeltaNet: 0.75 d / 6)."""
    assert {"retnet", "gla", "deltanet", "gated_deltanet"} <= set(MIXERS)
    retnet = match_params(ModelConfig(mixer="retnet", n_layers=2), 3_000_000)
    assert retnet.d_model % 8 == 0  # 4 heads of an even key head dim
    gdn = match_params(ModelConfig(mixer="gated_deltanet", n_layers=2), 3_000_000)
    assert (gdn.d_model * 3) % (4 * 6) == 0  # 0.75 d_model split over 6 heads


def test_match_params_respects_mixer_constraints():
    cfg = match_params(ModelConfig(mixer="attention", mixer_args={"n_heads": 6}), 500_000)
    assert cfg.d_model % 12 == 0  # divisible by heads, with an even head dim for rotary embeddings


def test_gqa_sizing_counts_the_smaller_key_value_projections():
    mha = match_params(ModelConfig(mixer="attention", mixer_args={"n_heads": 8}), 3_000_000)
    mqa = match_params(ModelConfig(mixer="attention", mixer_args={"n_heads": 8, "n_kv_heads": 1}), 3_000_000)
    assert mqa.d_model > mha.d_model  # the budget the kv projections no longer take goes into width
    assert mqa.d_model % 16 == 0 and mha.d_model % 16 == 0


def test_mixer_only_stacks_report_when_unreachable():
    with pytest.raises(ValueError, match="mlp_ratio=0 only d_model can move"):
        match_params(ModelConfig(mixer="attention", mlp_ratio=0, n_layers=2, mixer_args={"n_heads": 8}), 10_000)


def test_bad_budget():
    with pytest.raises(ValueError, match="positive integer parameter count, got 0"):
        match_params(ModelConfig(), 0)


def test_match_width_is_equal_width():
    cfgs = [match_width(ModelConfig(mixer=name, d_ff=7), 96) for name in MIXERS]
    assert {c.d_model for c in cfgs} == {96} and {c.hidden for c in cfgs} == {384}


@pytest.mark.parametrize("budget", [100_000, 3_000_000, 100_000_000])
@pytest.mark.parametrize("mixer_args", [{}, {"headdim": 64}, {"d_state": 16, "ngroups": 2, "headdim": 16}], ids=str)
def test_mamba2_sized_within_two_percent_under_its_head_constraints(budget, mixer_args):
    cfg = match_params(ModelConfig(mixer="mamba2", n_layers=4, mixer_args=mixer_args), budget)
    assert abs(non_embedding_params(cfg) - budget) <= 0.02 * budget
    with torch.device("meta"):
        mixer = cfg.make_mixer()
    headdim = mixer_args.get("headdim")
    assert mixer.nheads * mixer.headdim == mixer.d_ssm and (headdim is None or mixer.headdim == headdim)
    assert mixer.nheads % mixer_args.get("ngroups", 1) == 0
