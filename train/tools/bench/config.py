"""What a benchmark sweep measures: mixers (with attention in two forms), size, lengths, modes, timing budget."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from seqmix.archs import ModelConfig, get_mixer, match_params, match_width, pattern_name
from seqmix.train.checks import check_int

from .measure import DTYPES, MODES

ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "attention": ("attention", {"impl": "sdpa"}),
    "attention_explicit": ("attention", {"impl": "explicit"}),
}
"""Benchmark labels that stand for a registered mixer with arguments."""

DEFAULT_MIXERS = ("attention", "attention_explicit", "linear_attention", "mamba")
DEFAULT_PARAMS = 100_000


@dataclass(frozen=True)
class MixerSpec:
    """A benchmarked arm: the label it is reported under, a registered mixer name and its constructor arguments;
    for a hybrid, `name` is its readable name (mamba*3+attention) and `layers` the (name, args) of each entry."""

    label: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    layers: tuple[tuple[str, dict[str, Any]], ...] | None = None

    def model_config(self, defaults: Callable[[str], dict[str, Any]] = lambda name: {}, **fields: Any) -> ModelConfig:
        """This arm's ModelConfig with the other fields given; each mixer's args go over defaults(its name)."""
        if self.layers is None:
            return ModelConfig(mixer=self.name, mixer_args={**defaults(self.name), **self.args}, **fields)
        layers: list[Any] = []
        for name, args in self.layers:
            args = {**defaults(name), **args}
            layers.append(functools.partial(get_mixer(name), **args) if args else name)
        return ModelConfig(layers=layers, **fields)

    @property
    def options(self) -> dict[str, Any]:
        """The constructor arguments, as recorded in results: the args, or a hybrid's [name, args] per entry."""
        return self.args if self.layers is None else {"layers": [[n, a] for n, a in self.layers]}


PATTERN_HELP = (
    "a registered name, attention_explicit, name:key=value[,key=value], or a hybrid layer pattern: entries joined "
    "by '+', each repeated with *N, e.g. 'mamba*3+attention:n_heads=2' (the pattern repeats to fill the layers, "
    "whose number its length must divide)"
)


def _parse_one(text: str, label: str) -> tuple[str, dict[str, Any]]:
    """One mixer: an alias, or 'name[:key=value,...]' -> (registered name, args)."""
    if text in ALIASES:
        name, args = ALIASES[text]
        return name, dict(args)
    name, _, rest = text.partition(":")
    cls = get_mixer(name)  # raises naming the registered mixers
    args: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"mixer {label!r}: expected name:key=value[,key=value], got the item {item!r}")
        try:
            args[key] = json.loads(value)
        except json.JSONDecodeError:
            args[key] = value
    return cls.name, args


def parse_mixer(text: str) -> MixerSpec:
    """An arm from the command line, as PATTERN_HELP says (option values parsed as JSON if they can be)."""
    entries = re.split(r"\+(?=[A-Za-z_])", text)  # not the + of a number such as 1e+3
    if len(entries) == 1 and not re.search(r"[*×]\s*\d+$", text):
        name, args = _parse_one(text, text)
        return MixerSpec(text, name, args)
    layers: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        match = re.fullmatch(r"(.+?)(?:\s*[*×]\s*(\d+))?", entry.strip())
        count = int(match.group(2) or 1) if match else 0
        if not match or count < 1:
            raise ValueError(f"mixer pattern {text!r}: expected entries like name*N joined by '+', got {entry!r}")
        layers += [_parse_one(match.group(1), text)] * count
    return MixerSpec(text, pattern_name([n for n, _ in layers]), {}, tuple(layers))


@dataclass
class BenchConfig:
    """A scaling sweep: every mixer x mode x length, each point timed in a fresh worker within a time budget."""

    mixers: tuple[str, ...] = DEFAULT_MIXERS
    params: int | None = None  # non-embedding parameter budget (archs.match_params); DEFAULT_PARAMS if no width
    d_model: int | None = None  # or one width for every mixer (archs.match_width)
    n_layers: int = 2
    vocab_size: int = 256
    mlp_ratio: float = 4.0
    seq_lens: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)
    batch: int = 1
    tokens_per_batch: int | None = None  # instead of batch: batch = max(1, tokens_per_batch // L)
    decode_batch: int | None = None  # batch for decode (default: as for the other modes)
    modes: tuple[str, ...] = MODES
    decode_steps: int = 16
    dtype: str = "float32"
    device: str = "auto"
    repeats: int = 5
    warmup: int = 1
    min_time_s: float = 0.0  # keep timing a point until this many seconds of repeats (cheap points: more samples)
    rounds: int = 1  # sweep this many times, pooling each point's repeats: drifts in machine load hit every point
    time_budget_s: float = 60.0
    memory_limit_gb: float | None = None  # CPU workers' address-space cap; default half of physical memory
    threads: int | None = None
    isolate: bool = True
    seed: int = 0
    out_dir: str | None = None

    def __post_init__(self) -> None:
        self.mixers, self.modes = tuple(self.mixers), tuple(self.modes)
        self.seq_lens = tuple(sorted(set(self.seq_lens)))
        if not self.mixers:
            raise ValueError("mixers is empty; name at least one (e.g. attention, linear_attention, mamba)")
        if len(set(self.mixers)) != len(self.mixers):
            raise ValueError(f"mixers has duplicates: {list(self.mixers)}")
        for m in self.mixers:
            parse_mixer(m).model_config(n_layers=self.n_layers)  # a hybrid's pattern must divide n_layers
        bad_modes = [m for m in self.modes if m not in MODES]
        if bad_modes or not self.modes:
            raise ValueError(f"unknown modes {bad_modes or '(none given)'}; choose from {', '.join(MODES)}")
        if not self.seq_lens or any(not isinstance(n, int) or n < 1 for n in self.seq_lens):
            raise ValueError(f"seq_lens must be positive integers, got {list(self.seq_lens)}")
        if self.params is not None and self.d_model is not None:
            raise ValueError(f"give a parameter budget (params={self.params}) or a width (d_model={self.d_model}), not both")
        for name in ("n_layers", "vocab_size", "batch", "decode_steps", "repeats", "rounds"):
            check_int(name, getattr(self, name))
        for name in ("params", "d_model", "tokens_per_batch", "decode_batch", "threads"):
            check_int(name, getattr(self, name), optional=True)
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be a non-negative integer, got {self.warmup!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if not self.min_time_s >= 0:
            raise ValueError(f"min_time_s must be >= 0, got {self.min_time_s!r}")
        if not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive, got {self.time_budget_s!r}")
        if self.memory_limit_gb is not None and not self.memory_limit_gb > 0:
            raise ValueError(f"memory_limit_gb must be positive or None, got {self.memory_limit_gb!r}")
        self.device = resolve_device(self.device)

    @property
    def specs(self) -> list[MixerSpec]:
        """The parsed mixer arms, in order."""
        return [parse_mixer(m) for m in self.mixers]

    def batch_for(self, mode: str, seq_len: int) -> int:
        """The batch a point runs at."""
        if mode == "decode" and self.decode_batch is not None:
            return self.decode_batch
        if self.tokens_per_batch is not None:
            return max(1, self.tokens_per_batch // seq_len)
        return self.batch

    def model_config(self, spec: MixerSpec) -> ModelConfig:
        """The arm's model, sized to the parameter budget or the shared width."""
        base = spec.model_config(n_layers=self.n_layers, vocab_size=self.vocab_size, mlp_ratio=self.mlp_ratio)
        if self.d_model is not None:
            return match_width(base, self.d_model)
        return match_params(base, self.params or DEFAULT_PARAMS)

    def sizing(self) -> str:
        """How models are sized, in words."""
        if self.d_model is not None:
            return f"equal width d_model={self.d_model}"
        return f"matched non-embedding parameters ≈ {self.params or DEFAULT_PARAMS:,}"


def resolve_device(device: str) -> str:
    """'auto' -> cuda when present, else cpu; anything else must be cpu or an available cuda device."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here; use cpu or auto")
        return device
    raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda[:N]")


QUICK = dict(
    params=30_000,  # small width: attention's L^2 term dominates from short lengths on
    seq_lens=(512, 1024, 2048, 4096),
    repeats=3,
    warmup=1,
    decode_steps=16,
    decode_batch=8,
    time_budget_s=20.0,
    threads=1,  # one thread per worker: far steadier than two when anything else runs on a small machine
)
"""The --quick preset: a short sweep (about two minutes on two CPU cores) that still shows the slopes."""


def with_preset(preset: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """BenchConfig fields: the preset's, overridden by those given (a given width replaces a preset budget)."""
    preset = {k: v for k, v in preset.items() if not (k == "params" and given.get("d_model") is not None)}
    return {**preset, **given}


def quick(**overrides: Any) -> BenchConfig:
    """The quick preset as a BenchConfig, with any field overridden."""
    return BenchConfig(**with_preset(QUICK, overrides))
