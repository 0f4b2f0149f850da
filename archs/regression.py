"""The regression backbone: real-valued tokens in, one real prediction per position out, on the LM's blocks and mixers."""

from __future__ import annotations

from torch import Tensor, nn

from .mixer import Mixer, positive_int
from .model import Block, ModelConfig, blocks_param_count, init_blocks


class RegressionModel(nn.Module):
    """Tokens (B, L, d_in) -> predictions (B, L).

    Default: a linear read-in to d_model -> N x Block (each with its layer's mixer) -> RMSNorm -> a linear read-out to
    one number, so only the mixer differs from LanguageModel. `token_space`: von Oswald et al.'s attention-only stack,
    whose residual stream is the tokens themselves: x <- x + mixer(x) per layer (no read-in, norms nor MLP; d_model is
    d_in), the prediction minus the last coordinate (their tokens (x, y) put y last; a query enters with y = 0)."""

    def __init__(self, config: ModelConfig, d_in: int, token_space: bool = False):
        super().__init__()
        positive_int("d_in", d_in)
        self.config, self.d_in, self.token_space = config, d_in, token_space
        if token_space:
            if config.d_model != d_in:
                raise ValueError(f"token_space runs the mixers on the tokens themselves, so d_model must be d_in={d_in}, "
                                 f"got d_model={config.d_model}")
            if config.hidden:
                raise ValueError(f"token_space layers are mixers alone (no MLP); set mlp_ratio: 0, got d_ff={config.hidden}")
            self.layers = nn.ModuleList(config.make_mixer(i) for i in range(config.n_layers))
            return
        self.read_in = nn.Linear(d_in, config.d_model)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.read_out = nn.Linear(config.d_model, 1)
        init_blocks(self.layers)

    @property
    def mixers(self) -> list[Mixer]:
        """The mixer of every layer, in order."""
        return list(self.layers) if self.token_space else [block.mixer for block in self.layers]

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.d_in:
            raise ValueError(f"tokens must be (batch, length, d_in={self.d_in}), got {tuple(tokens.shape)}")
        if self.token_space:
            x = tokens
            for mixer in self.layers:
                x = x + mixer(x)
            return -x[..., -1]
        x = self.read_in(tokens)
        for block in self.layers:
            x = block(x)
        return self.read_out(self.norm(x)).squeeze(-1)  # (B, L, 1) -> (B, L)

    def param_count(self, embedding: bool = True) -> int:
        """Parameters, analytically; the read-in and read-out count as the embedding (outside the matched body)."""
        if self.token_space:
            return sum(m.param_count() for m in self.mixers)
        c = self.config
        io = (self.d_in + 1) * c.d_model + c.d_model + 1
        return blocks_param_count(c, self.mixers) + c.d_model + (io if embedding else 0)
