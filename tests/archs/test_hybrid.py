"""The mixer contract at model level, for hybrid stacks (ModelConfig.layers) and one homogeneous model per mixer."""

import functools

import pytest
import torch

from seqmix.archs import MIXERS, Attention, LanguageModel, Mamba, ModelConfig, match_params, non_embedding_params

VOCAB = 37


def _cases() -> dict[str, dict]:
    """ModelConfig fields per case: hybrid patterns (named, factories, repeated, every registered mixer at once) and
    one homogeneous model per registered mixer, so that a new mixer gets the model-level checks too."""
    hybrids = {
        "mamba3_attention": dict(layers=["mamba", "mamba", "mamba", functools.partial(Attention, n_heads=2)],
                                 n_layers=4),
        "attention_linear_repeated": dict(layers=["attention", "linear_attention"], n_layers=4, mlp_ratio=0.0),
        "every_registered": dict(layers=list(MIXERS), n_layers=len(MIXERS), mlp_ratio=2.0),
    }
    return hybrids | {f"only_{name}": dict(mixer=name, n_layers=2) for name in MIXERS}


CASES = _cases()


def build(case: str, d_model: int = 16) -> LanguageModel:
    return LanguageModel(ModelConfig(**CASES[case], d_model=d_model, vocab_size=VOCAB))


def test_the_pattern_repeats_to_fill_the_stack():
    model = build("attention_linear_repeated")
    assert [m.name for m in model.mixers] == ["attention", "linear_attention"] * 2
    assert model.config.mixer_name == "attention+linear_attention"
    assert build("mamba3_attention").config.mixer_name == "mamba*3+attention"
    assert build("mamba3_attention").mixers[3].n_heads == 2
    assert build("only_mamba").config.mixer_name == "mamba" and not build("only_mamba").config.is_hybrid


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (2, 23)], ids=str)
def test_causality(case, shape):
    b, length = shape
    torch.manual_seed(0)
    model = build(case).double()
    idx = torch.randint(0, VOCAB, (b, length))
    logits = model(idx)
    assert logits.shape == (b, length, VOCAB) and torch.isfinite(logits).all()
    for t in {0, length // 2, length - 1}:
        idx2 = idx.clone()
        idx2[:, t + 1 :] = (idx2[:, t + 1 :] + 1 + torch.randint(0, VOCAB - 1, idx2[:, t + 1 :].shape)) % VOCAB
        logits2 = model(idx2)
        torch.testing.assert_close(logits2[:, : t + 1], logits[:, : t + 1], rtol=1e-6, atol=1e-6)
        if t + 1 < length:  # the change must show later, or this proves nothing
            assert not torch.allclose(logits2[:, t + 1 :], logits[:, t + 1 :])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("length", [1, 12])
def test_prefill_then_step_is_forward(case, length):
    torch.manual_seed(1)
    model = build(case).double()
    idx = torch.randint(0, VOCAB, (2, length))
    want = model(idx)
    for split in sorted({1, length // 2 or 1, length}):
        head, states = model.prefill(idx[:, :split])
        outs = [head]
        for t in range(split, length):
            logits, states = model.step(idx[:, t], states)
            outs.append(logits[:, None])
        torch.testing.assert_close(torch.cat(outs, 1), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_gradients_reach_every_parameter(case):
    torch.manual_seed(2)
    model = build(case)
    model(torch.randint(0, VOCAB, (2, 11))).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{case}: no gradient for {name}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{case}: zero gradient for {name}"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("d_model", [16, 32])
def test_param_count_is_numel(case, d_model):
    model = build(case, d_model)
    assert model.param_count() == sum(p.numel() for p in model.parameters())
    assert model.param_count(embedding=False) == non_embedding_params(model.config)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("length", [1, 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_bytes_are_what_the_states_hold(case, length, dtype):
    model = build(case).to(dtype)
    _, states = model.prefill(torch.randint(0, VOCAB, (3, length)))
    held = sum(t.numel() * t.element_size() for state in states for t in state.values())
    assert model.state_bytes(length, batch=3, dtype=dtype) == held


def test_accounting_sums_over_layers():
    """A 50/50 hybrid costs the mean of the two homogeneous stacks of the same depth and width."""
    def model(layers):
        return LanguageModel(ModelConfig(layers=layers, n_layers=4, d_model=32, vocab_size=VOCAB))
    hybrid, mamba, attention = model(["mamba", "attention"]), model(["mamba"]), model(["attention"])
    body = lambda m: m.param_count(embedding=False)  # noqa: E731
    assert 2 * body(hybrid) == body(mamba) + body(attention)
    for n in (1, 64, 1000):
        assert 2 * hybrid.flops_per_token(n) == pytest.approx(mamba.flops_per_token(n) + attention.flops_per_token(n))
        assert 2 * hybrid.state_bytes(n, batch=2) == mamba.state_bytes(n, batch=2) + attention.state_bytes(n, batch=2)


@pytest.mark.parametrize("budget", [100_000, 3_000_000, 100_000_000])
def test_match_params_sizes_a_hybrid_within_two_percent(budget):
    config = ModelConfig(layers=["mamba", "mamba", "mamba", functools.partial(Attention, n_heads=4)], n_layers=4,
                         vocab_size=1000)
    sized = match_params(config, budget)
    assert abs(non_embedding_params(sized) - budget) <= 0.02 * budget
    assert sized.layers == config.layers and sized.d_model % 4 == 0  # every layer accepts the width
    with torch.device("meta"):
        assert LanguageModel(sized).param_count(embedding=False) == non_embedding_params(sized)


def test_match_params_finds_a_width_every_layer_accepts():
    heads6 = functools.partial(Attention, n_heads=6)
    sized = match_params(ModelConfig(layers=["mamba", heads6], n_layers=2), 200_000)
    assert sized.d_model % 6 == 0


def test_round_trip_through_plain_data():
    config = ModelConfig(layers=["mamba", {"class_path": "seqmix.archs.Mamba", "init_args": {"d_state": 4}},
                                 functools.partial(Attention, n_heads=2), Mamba], n_layers=4, d_model=16)
    data = config.to_dict()
    assert data["layers"][0] == "mamba"
    assert data["layers"][1] == {"class_path": "seqmix.archs.mamba.Mamba", "init_args": {"d_state": 4}}
    restored = ModelConfig.from_dict(data)
    assert restored.to_dict() == data and restored.mixer_name == config.mixer_name == "mamba*2+attention+mamba"
    assert LanguageModel(restored).mixers[1].d_state == 4
    assert ModelConfig.from_dict({k: v for k, v in data.items() if k != "layers"}).layers is None  # older hparams


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(layers=["mamba", "mambo"], n_layers=2), r"^layers\[1\]: unknown mixer 'mambo'; registered mixers: "),
        (dict(layers=["mamba"] * 3, n_layers=4), r"^layers has 3 entries, which does not divide n_layers=4"),
        (dict(layers=[], n_layers=2), r"^layers must be a non-empty list"),
        (dict(layers="mamba", n_layers=2), r"^layers must be a non-empty list .*got 'mamba'"),
        (dict(layers=[3], n_layers=1), r"^layers\[0\] must be a registered name .*got 3"),
        (dict(layers=["mamba"], mixer_args={"d_state": 4}), r"^mixer_args=\{'d_state': 4\} only go with `mixer`"),
        (dict(layers=["mamba"], mixer="linear_attention"), r"^mixer='linear_attention' and layers are both given"),
        (dict(layers=[{"class_path": "seqmix.archs.Mamba", "init_args": {"d_stat": 4}}]), r"does not take d_stat"),
        (dict(layers=[{"class_path": "seqmix.archs.Nope"}]), r"'seqmix.archs.Nope' does not name a seqmix Mixer"),
    ],
)
def test_bad_layer_patterns_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        ModelConfig(**kwargs)
    assert "\n" not in str(err.value)
