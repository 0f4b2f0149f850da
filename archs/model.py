"""The one backbone every mixer is compared in, and the config that describes it."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mixer import Mixer, State, check_mixer_kwargs, get_mixer, positive_int

MixerFactory = Callable[[int], Mixer]
"""Anything that builds a mixer from d_model: a Mixer class, a functools.partial of one, a CLI class_path."""


@dataclass
class ModelConfig:
    """A whole language model: only `mixer` (a registry name or a factory taking d_model) differs between arms."""

    mixer: str | MixerFactory = "attention"
    mixer_args: dict[str, Any] = field(default_factory=dict)
    d_model: int = 128
    n_layers: int = 2
    vocab_size: int = 256
    mlp_ratio: float = 4.0
    d_ff: int | None = None
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        positive_int("d_model", self.d_model)
        positive_int("n_layers", self.n_layers)
        positive_int("vocab_size", self.vocab_size)
        if not (isinstance(self.mlp_ratio, numbers.Real) and 0 <= self.mlp_ratio < math.inf):  # nan and inf fail too
            raise ValueError(f"mlp_ratio must be >= 0 and finite (0 drops the MLP), got {self.mlp_ratio!r}")
        if self.d_ff is not None and (isinstance(self.d_ff, bool) or not isinstance(self.d_ff, int) or self.d_ff < 0):
            raise ValueError(f"d_ff must be a non-negative integer or None, got {self.d_ff!r}")
        if isinstance(self.mixer, str):
            check_mixer_kwargs(get_mixer(self.mixer), self.mixer_args)
        elif self.mixer_args:
            raise ValueError("mixer_args only go with a mixer given by name; put them in the factory instead")
        elif not callable(self.mixer):
            raise ValueError(f"mixer must be a registered name or a callable taking d_model, got {self.mixer!r}")

    @property
    def hidden(self) -> int:
        """The MLP's hidden width (0: no MLP)."""
        return self.d_ff if self.d_ff is not None else round(self.mlp_ratio * self.d_model)

    def make_mixer(self) -> Mixer:
        """Build one mixer layer."""
        if isinstance(self.mixer, str):
            return get_mixer(self.mixer)(self.d_model, **self.mixer_args)
        mixer = self.mixer(self.d_model)
        if not isinstance(mixer, Mixer):
            raise TypeError(f"the mixer factory returned {type(mixer).__name__}, not a seqmix Mixer")
        return mixer

    @property
    def mixer_name(self) -> str:
        """The registry name of this config's mixer."""
        if isinstance(self.mixer, str):
            return get_mixer(self.mixer).name
        with torch.device("meta"):
            return self.make_mixer().name


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(d_model=64, n_layers=2),
    "small": dict(d_model=256, n_layers=4),
    "base": dict(d_model=512, n_layers=8),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named model size (tiny, small, base) with any field overridden."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


class MLP(nn.Module):
    """Two-layer GELU feed-forward."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc = nn.Linear(d_model, hidden, bias=False)
        self.proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """RMSNorm -> mixer -> residual, then RMSNorm -> MLP -> residual (the MLP half is absent when hidden is 0)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mixer = config.make_mixer()
        self.norm2 = nn.RMSNorm(config.d_model, eps=config.norm_eps) if config.hidden else None
        self.mlp = MLP(config.d_model, config.hidden) if config.hidden else None

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x)) if self.mlp is not None else x

    def prefill(self, x: Tensor, max_len: int | None) -> tuple[Tensor, State]:
        y, state = self.mixer.prefill(self.norm1(x), max_len)
        x = x + y
        return (x + self.mlp(self.norm2(x)) if self.mlp is not None else x), state

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        y, state = self.mixer.step(self.norm1(x), state)
        x = x + y
        return (x + self.mlp(self.norm2(x)) if self.mlp is not None else x), state


class LanguageModel(nn.Module):
    """embedding -> N x Block -> RMSNorm -> tied head; maps token ids (B, L) to logits (B, L, V)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self._init_backbone()

    def _init_backbone(self) -> None:
        # Only the backbone's own layers: each mixer initialises itself (Mamba's A_log, D and dt bias must survive).
        nn.init.normal_(self.embed.weight, std=0.02)
        for block in self.blocks:
            if block.mlp is not None:
                nn.init.normal_(block.mlp.fc.weight, std=0.02)
                nn.init.normal_(block.mlp.proj.weight, std=0.02 / math.sqrt(2 * self.config.n_layers))

    @property
    def mixers(self) -> list[Mixer]:
        """The mixer of every layer, in order."""
        return [block.mixer for block in self.blocks]

    def _head(self, x: Tensor) -> Tensor:
        return self.norm(x) @ self.embed.weight.t()

    def forward(self, idx: Tensor) -> Tensor:
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self._head(x)

    @torch.no_grad()
    def prefill(self, idx: Tensor, max_len: int | None = None) -> tuple[Tensor, list[State]]:
        """Run a prompt (B, L); return its logits and every layer's decode state."""
        x, states = self.embed(idx), []
        for block in self.blocks:
            x, state = block.prefill(x, max_len)
            states.append(state)
        return self._head(x), states

    @torch.no_grad()
    def step(self, tokens: Tensor, states: list[State]) -> tuple[Tensor, list[State]]:
        """Advance every sequence by one token (B,); returns next-token logits (B, V) and the updated states."""
        x = self.embed(tokens)
        for i, block in enumerate(self.blocks):
            x, states[i] = block.step(x, states[i])
        return self._head(x), states

    def clone_states(self, states: list[State]) -> list[State]:
        """A copy of every layer's decode state that shares no storage with it (see Mixer.clone_state)."""
        return [mixer.clone_state(state) for mixer, state in zip(self.mixers, states, strict=True)]

    def param_count(self, embedding: bool = True) -> int:
        """Parameters, analytically: the tied embedding once, plus every layer and the final norm."""
        c = self.config
        per_layer = c.d_model + (2 * c.d_model * c.hidden + c.d_model if c.hidden else 0)
        body = sum(per_layer + m.param_count() for m in self.mixers) + c.d_model
        return body + (c.vocab_size * c.d_model if embedding else 0)

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token at context seq_len: mixers, MLPs and the output head."""
        c = self.config
        return sum(m.flops_per_token(seq_len) for m in self.mixers) + c.n_layers * 2 * 2 * c.d_model * c.hidden + (
            2 * c.d_model * c.vocab_size
        )

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        """Decode-state bytes of all layers after seq_len tokens."""
        return sum(m.state_bytes(seq_len, batch, dtype) for m in self.mixers)
