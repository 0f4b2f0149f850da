"""The one backbone every mixer is compared in, and the config that describes it."""

from __future__ import annotations

import functools
import importlib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mixer import MIXERS, Mixer, State, check_mixer_kwargs, get_mixer, positive_int

MixerFactory = Callable[[int], Mixer]
"""Anything that builds a mixer from d_model: a Mixer class, a functools.partial of one, a CLI class_path."""

DEFAULT_MIXER = "attention"

LayerSpec = str | MixerFactory
"""One layer's mixer: a registry name or a factory taking d_model."""


@dataclass
class ModelConfig:
    """A whole language model: only the mixers differ between arms. `mixer` (a registry name or a factory taking
    d_model) builds every layer; `layers`, a per-layer pattern repeated to fill n_layers, overrides it (a hybrid)."""

    mixer: str | MixerFactory = DEFAULT_MIXER
    mixer_args: dict[str, Any] = field(default_factory=dict)
    d_model: int = 128
    n_layers: int = 2
    vocab_size: int = 256
    mlp_ratio: float = 4.0
    d_ff: int | None = None
    norm_eps: float = 1e-5
    layers: list[str | MixerFactory] | None = None

    def __post_init__(self) -> None:
        positive_int("d_model", self.d_model)
        positive_int("n_layers", self.n_layers)
        positive_int("vocab_size", self.vocab_size)
        if not (isinstance(self.mlp_ratio, numbers.Real) and 0 <= self.mlp_ratio < math.inf):  # nan and inf fail too
            raise ValueError(f"mlp_ratio must be >= 0 and finite (0 drops the MLP), got {self.mlp_ratio!r}")
        if self.d_ff is not None and (isinstance(self.d_ff, bool) or not isinstance(self.d_ff, int) or self.d_ff < 0):
            raise ValueError(f"d_ff must be a non-negative integer or None, got {self.d_ff!r}")
        if self.layers is not None:
            self.layers = _check_layers(self.layers, self.n_layers)
            if self.mixer_args:
                raise ValueError(f"mixer_args={self.mixer_args!r} only go with `mixer`; with `layers`, give each "
                                 "layer's options as {class_path, init_args}")
            if self.mixer != DEFAULT_MIXER:  # two configs that each pick the mixers: say so rather than drop one
                raise ValueError(f"mixer={mixer_to_spec(self.mixer)!r} and layers are both given; layers sets every "
                                 "layer's mixer, so drop mixer (or set layers to null)")
        elif isinstance(self.mixer, str):
            check_mixer_kwargs(get_mixer(self.mixer), self.mixer_args)
        elif self.mixer_args:
            raise ValueError("mixer_args only go with a mixer given by name; put them in the factory instead")
        elif not callable(self.mixer):
            raise ValueError(f"mixer must be a registered name or a callable taking d_model, got {self.mixer!r}")

    @property
    def hidden(self) -> int:
        """The MLP's hidden width (0: no MLP)."""
        return self.d_ff if self.d_ff is not None else round(self.mlp_ratio * self.d_model)

    @property
    def pattern(self) -> list[LayerSpec]:
        """The mixer spec of every layer, in order (`layers` repeated to n_layers, else `mixer` n_layers times)."""
        if self.layers is None:
            return [self.mixer] * self.n_layers
        return list(self.layers) * (self.n_layers // len(self.layers))

    def make_mixer(self, layer: int = 0) -> Mixer:
        """Build the mixer of layer `layer`."""
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer must be in [0, {self.n_layers}), got {layer!r}")
        spec = self.pattern[layer]
        if isinstance(spec, str):
            return get_mixer(spec)(self.d_model, **(self.mixer_args if self.layers is None else {}))
        mixer = spec(self.d_model)
        if not isinstance(mixer, Mixer):
            raise TypeError(f"the mixer factory returned {type(mixer).__name__}, not a seqmix Mixer")
        return mixer

    @property
    def is_hybrid(self) -> bool:
        """Whether the layers are not all the same mixer class."""
        return len(set(self.layer_names)) > 1

    @property
    def layer_names(self) -> list[str]:
        """The registry name of every layer's mixer."""
        return [_spec_name(spec, self.d_model) for spec in self.pattern]

    @property
    def mixer_name(self) -> str:
        """A readable name: the registry name, or for a hybrid its pattern run-length coded, e.g. mamba*3+attention."""
        if self.layers is None:
            return _spec_name(self.mixer, self.d_model)
        return pattern_name([_spec_name(spec, self.d_model) for spec in self.layers])

    def to_dict(self) -> dict[str, Any]:
        """This config as plain data (safe for checkpoints, hparams.yaml and jsonargparse)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        layers = None if self.layers is None else [mixer_to_spec(spec) for spec in self.layers]
        return {**data, "mixer": mixer_to_spec(self.mixer), "mixer_args": dict(self.mixer_args), "layers": layers}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict (a dict without `layers`, from before hybrids, reads too)."""
        data = dict(data)
        if "mixer" in data:
            data["mixer"] = mixer_from_spec(data["mixer"])
        if data.get("layers") is not None:
            data["layers"] = [mixer_from_spec(spec) for spec in data["layers"]]
        return cls(**data)


def pattern_name(names: list[str]) -> str:
    """A layer pattern's readable name, run-length coded: [mamba, mamba, mamba, attention] -> mamba*3+attention."""
    if not names:
        raise ValueError("a layer pattern needs at least one mixer name")
    runs: list[list[Any]] = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    if len(runs) == 1:
        return names[0]
    return "+".join(name if n == 1 else f"{name}*{n}" for name, n in runs)


def _spec_name(spec: LayerSpec, d_model: int) -> str:
    """The registry name of the mixer a layer spec builds."""
    if isinstance(spec, str):
        return get_mixer(spec).name
    with torch.device("meta"):
        return spec(d_model).name


def _check_layers(layers: Any, n_layers: int) -> list[LayerSpec]:
    """A valid layer pattern as a list (dict entries {class_path, init_args} become factories), else a ValueError."""
    if isinstance(layers, str) or not isinstance(layers, list | tuple) or not layers:
        raise ValueError(f"layers must be a non-empty list of mixer names or {{class_path, init_args}}, got {layers!r}")
    if n_layers % len(layers):
        raise ValueError(f"layers has {len(layers)} entries, which does not divide n_layers={n_layers} (a pattern "
                         f"repeats to fill the stack); use n_layers a multiple of {len(layers)}")
    checked = []
    for i, spec in enumerate(layers):
        spec = mixer_from_spec(spec)
        if isinstance(spec, str):
            if spec.lower().replace("-", "_") not in _known_names():  # get_mixer's message lacks the position
                raise ValueError(f"layers[{i}]: unknown mixer {spec!r}; registered mixers: {', '.join(sorted(MIXERS))}")
        elif not callable(spec):
            raise ValueError(f"layers[{i}] must be a registered name or {{class_path, init_args}}, got {spec!r}")
        checked.append(spec)
    return checked


def _known_names() -> set[str]:
    """Every name get_mixer accepts: registry names and class names, lower case."""
    return {key for name, cls in MIXERS.items() for key in (name, cls.__name__.lower())}


def mixer_to_spec(mixer: Any) -> str | dict[str, Any]:
    """A checkpoint-safe (plain data) form of a layer spec: the registry name, or {class_path, init_args}.

    Accepts a name, a Mixer class, or a functools.partial of one with keyword arguments (which is also what
    jsonargparse builds from ``{class_path: seqmix.archs.Mamba, init_args: {...}}``).
    """
    if isinstance(mixer, str):
        return mixer
    cls, init_args = mixer, {}
    if isinstance(mixer, functools.partial):
        candidates = [a for a in (mixer.func, *mixer.args) if isinstance(a, type) and issubclass(a, Mixer)]
        extra = [a for a in mixer.args if not (isinstance(a, type) or callable(a))]
        cls = candidates[-1] if candidates and not extra else None
        init_args = dict(mixer.keywords)
    if not (isinstance(cls, type) and issubclass(cls, Mixer)):
        raise ValueError(
            f"cannot save mixer {mixer!r} in hyperparameters; give a registry name ({', '.join(sorted(MIXERS))}), "
            "a Mixer class, or functools.partial(MixerClass, **options)"
        )
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def mixer_from_spec(spec: Any) -> Any:
    """Inverse of mixer_to_spec: a name stays a name; {class_path, init_args} becomes functools.partial(cls, **args)."""
    if not isinstance(spec, dict):
        return spec
    if set(spec) - {"class_path", "init_args"} or "class_path" not in spec:
        raise ValueError(f"a mixer spec is a name or {{class_path, init_args}}, got {spec!r}")
    module, _, name = spec["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name, None) if module else None
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, Mixer)):
        raise ValueError(f"mixer class_path {spec['class_path']!r} does not name a seqmix Mixer class")
    init_args = dict(spec.get("init_args") or {})
    check_mixer_kwargs(cls, init_args)
    return functools.partial(cls, **init_args)


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

    def __init__(self, config: ModelConfig, layer: int = 0):
        super().__init__()
        self.norm1 = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self.mixer = config.make_mixer(layer)
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


def init_blocks(blocks: nn.ModuleList) -> None:
    """Initialise the blocks' own layers (the MLPs); each mixer initialises itself (Mamba's A_log, D and dt bias must
    survive)."""
    for block in blocks:
        if block.mlp is not None:
            nn.init.normal_(block.mlp.fc.weight, std=0.02)
            nn.init.normal_(block.mlp.proj.weight, std=0.02 / math.sqrt(2 * len(blocks)))


def blocks_param_count(config: ModelConfig, mixers: list[Mixer]) -> int:
    """Parameters of the Blocks around these mixers, analytically: each block's norms, MLP and mixer."""
    c = config
    per_layer = c.d_model + (2 * c.d_model * c.hidden + c.d_model if c.hidden else 0)
    return sum(per_layer + m.param_count() for m in mixers)


class LanguageModel(nn.Module):
    """embedding -> N x Block (each with its layer's mixer) -> RMSNorm -> tied head; token ids (B, L) -> logits (B, L, V)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = nn.RMSNorm(config.d_model, eps=config.norm_eps)
        self._init_backbone()

    def _init_backbone(self) -> None:
        nn.init.normal_(self.embed.weight, std=0.02)
        init_blocks(self.blocks)

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
        return blocks_param_count(c, self.mixers) + c.d_model + (c.vocab_size * c.d_model if embedding else 0)

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token at context seq_len: mixers, MLPs and the output head."""
        c = self.config
        return sum(m.flops_per_token(seq_len) for m in self.mixers) + c.n_layers * 2 * 2 * c.d_model * c.hidden + (
            2 * c.d_model * c.vocab_size
        )

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        """Decode-state bytes of all layers after seq_len tokens."""
        return sum(m.state_bytes(seq_len, batch, dtype) for m in self.mixers)
