"""The mixer contract every sequence mixer implements, and the registry that names them."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

State = dict[str, Tensor]
"""A mixer's per-sequence decode state: named tensors (a KV cache, a fast-weight matrix, a conv window ...)."""


class Mixer(nn.Module, ABC):
    """A causal sequence mixer: (B, L, d_model) -> (B, L, d_model), with recurrent decode and analytic accounting."""

    name: ClassVar[str]
    d_model: int

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Mix a whole sequence in parallel; output t depends only on inputs <= t."""

    @abstractmethod
    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        """Run a prompt (B, L, D); return the outputs and the state after its last token (room for max_len tokens)."""

    @abstractmethod
    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """Advance one token: x (B, D) -> y (B, D), and `state` itself, advanced in place (its entries updated or
        replaced); a caller that needs the old state again takes `clone_state` first."""

    def clone_state(self, state: State) -> State:
        """A copy of a decode state that shares no storage with it (steps on one never change the other)."""
        return {name: t.clone() for name, t in state.items()}

    @abstractmethod
    def init_state(self, batch: int, max_len: int = 0) -> State:
        """An empty state for `batch` sequences, before any token."""

    @abstractmethod
    def param_count(self) -> int:
        """Number of parameters, computed from the hyperparameters (tested against numel)."""

    @abstractmethod
    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token, averaged over a sequence of length seq_len (a multiply-add counts 2)."""

    @abstractmethod
    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        """Bytes of decode state after seq_len tokens (what `prefill` returns holds exactly this much)."""


MIXERS: dict[str, type[Mixer]] = {}
"""Every registered mixer class, by name."""


def register(cls: type[Mixer]) -> type[Mixer]:
    """Class decorator: add a mixer to MIXERS under its `name`."""
    if not (isinstance(cls, type) and issubclass(cls, Mixer)):
        raise TypeError(f"only Mixer subclasses can be registered, got {cls!r}")
    if cls.name in MIXERS and MIXERS[cls.name] is not cls:
        raise ValueError(f"a mixer named {cls.name!r} is already registered ({MIXERS[cls.name].__qualname__})")
    MIXERS[cls.name] = cls
    return cls


def get_mixer(name: str) -> type[Mixer]:
    """Look a mixer class up by registry name or class name (case-insensitive)."""
    key = name.lower().replace("-", "_")
    for registered, cls in MIXERS.items():
        if key in (registered, cls.__name__.lower()):
            return cls
    raise ValueError(f"unknown mixer {name!r}; registered mixers: {', '.join(sorted(MIXERS))}")


def check_mixer_kwargs(cls: type[Mixer], kwargs: dict[str, Any]) -> None:
    """Reject keyword arguments the mixer's constructor does not take, naming them and the valid ones."""
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in ("self", "d_model")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"mixer {cls.name!r} does not take {', '.join(unknown)}; its options are: {', '.join(valid)}")


def positive_int(name: str, value: Any) -> int:
    """Return value if it is a positive int, else raise a ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
