"""RegressionModel: the LM's blocks on real-valued tokens, and von Oswald et al.'s linear self-attention in token space,
which with the paper's weights (Proposition 1) is exactly one step of gradient descent on the context."""

import pytest
import torch

from seqmix.archs import LanguageModel, ModelConfig, RegressionModel

LSA = dict(mixer="linear_attention", mixer_args={"n_heads": 1, "feature_map": "identity", "normalize": False},
           n_layers=1, mlp_ratio=0.0)


def lsa(d: int) -> RegressionModel:
    return RegressionModel(ModelConfig(d_model=d + 1, **LSA), d_in=d + 1, token_space=True)


def tasks(n: int, num_context: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (x_i, w.x_i) then (x_q, 0), float64, and the query's targets."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = 2 * torch.rand(n, num_context + 1, d, generator=g, dtype=torch.float64) - 1
    y = torch.einsum("nld,nd->nl", x, w)
    tokens = torch.cat([x, y[..., None]], dim=-1)
    tokens[:, -1, -1] = 0
    return tokens, y[:, -1]


def one_gd_step(tokens: torch.Tensor, eta: float) -> torch.Tensor:
    """The slow reference: per task, w = 0 - eta * grad of 1/(2N) sum_i (w.x_i - y_i)^2 at w = 0, then w.x_q."""
    out = []
    for seq in tokens:
        x, y, q = seq[:-1, :-1], seq[:-1, -1], seq[-1, :-1]
        grad = torch.zeros(x.shape[1], dtype=seq.dtype)
        for xi, yi in zip(x, y, strict=True):
            grad += (0.0 - yi) * xi / len(x)
        out.append((-eta * grad) @ q)
    return torch.stack(out)


def set_gd_weights(model: RegressionModel, eta: float, num_context: int) -> None:
    """The paper's construction: W_K = W_Q = [[I, 0], [0, 0]], W_V = [[0, 0], [0, -1]], P = (eta / N) on the y entry."""
    mixer = model.mixers[0]
    d1 = model.d_in
    wq = torch.zeros(d1, d1, dtype=torch.float64)
    wq[:-1, :-1] = torch.eye(d1 - 1)
    wv = torch.zeros(d1, d1, dtype=torch.float64)
    wv[-1, -1] = -1.0
    p = torch.zeros(d1, d1, dtype=torch.float64)
    p[-1, -1] = eta / num_context
    with torch.no_grad():
        mixer.qkv.weight.copy_(torch.cat([wq, wq, wv]))  # rows: q, k, v projections
        mixer.out.weight.copy_(p)


@pytest.mark.parametrize(("d", "num_context", "eta"), [(10, 10, 0.7), (3, 25, 1.9)])
def test_linear_self_attention_with_the_papers_weights_is_one_gd_step(d, num_context, eta):
    model = lsa(d).double()
    set_gd_weights(model, eta, num_context)
    tokens, _ = tasks(64, num_context, d)
    got = model(tokens)[:, -1]
    assert torch.allclose(got, one_gd_step(tokens, eta), atol=1e-12, rtol=1e-10)


def test_token_space_is_the_residual_of_the_mixer_on_the_tokens_read_at_minus_y():
    model = lsa(4).double()
    tokens, _ = tasks(5, 6, 4)
    expected = -(tokens + model.mixers[0](tokens))[..., -1]
    assert torch.equal(model(tokens), expected)
    assert model.param_count() == model.param_count(embedding=False) == sum(p.numel() for p in model.parameters()) == 4 * 5 * 5


@pytest.mark.parametrize("mixer", ["attention", "mamba", "linear_attention"])
def test_the_projected_backbone_counts_its_parameters_and_matches_the_lms_body(mixer):
    config = ModelConfig(mixer=mixer, d_model=16, n_layers=2, mlp_ratio=2.0)
    model = RegressionModel(config, d_in=7)
    assert model.param_count() == sum(p.numel() for p in model.parameters())
    assert model.param_count(embedding=False) == LanguageModel(config).param_count(embedding=False)
    assert model.param_count() - model.param_count(embedding=False) == (7 + 1) * 16 + 16 + 1  # read-in and read-out


@pytest.mark.parametrize("token_space", [False, True])
def test_predictions_are_causal_one_per_position(token_space):
    model = lsa(3) if token_space else RegressionModel(ModelConfig(mixer="mamba", d_model=16, n_layers=2), d_in=4)
    tokens = torch.randn(2, 9, 4)
    changed = tokens.clone()
    changed[:, 5:] = torch.randn(2, 4, 4)
    out, again = model(tokens), model(changed)
    assert out.shape == (2, 9)
    assert torch.allclose(out[:, :5], again[:, :5], atol=1e-6) and not torch.allclose(out[:, 5:], again[:, 5:])


def test_bad_settings_are_rejected_in_one_line():
    cases = [
        (lambda: RegressionModel(ModelConfig(d_model=8, **LSA), d_in=5, token_space=True), "d_model must be d_in=5"),
        (lambda: RegressionModel(ModelConfig(d_model=5, n_layers=1), d_in=5, token_space=True), "set mlp_ratio: 0"),
        (lambda: RegressionModel(ModelConfig(d_model=8), d_in=0), "d_in must be a positive integer"),
        (lambda: lsa(3)(torch.zeros(2, 5, 3)), "tokens must be (batch, length, d_in=4)"),
    ]
    for build, words in cases:
        with pytest.raises(ValueError) as err:
            build()
        assert words in str(err.value) and "\n" not in str(err.value)
