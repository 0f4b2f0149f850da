"""Rotary position embeddings, and their evaluation-time scalings past the training context (PI, NTK-aware, YaRN)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from torch import nn

METHODS = ("none", "pi", "ntk", "yarn")


@dataclass(frozen=True)
class RopeScaling:
    """How RoPE is stretched at evaluation time; factor 1 is the identity for every method.

    - ``pi``: position interpolation (Chen et al. 2023), every frequency divided by ``factor``.
    - ``ntk``: NTK-aware scaling, the base raised to ``base * factor ** (d / (d - 2))`` (d: rotary head dim).
    - ``yarn``: YaRN (Peng et al. 2023): a dimension that turns r = original_max_len / wavelength times over the
      training context is interpolated by the ramp gamma(r) = clamp((r - beta_slow) / (beta_fast - beta_slow), 0, 1),
      theta' = (1 - gamma) * theta / factor + gamma * theta, and the logits are sharpened by 1/t with
      sqrt(1/t) = 0.1 ln(factor) + 1 (applied as that factor on both q and k).
    """

    method: str = "none"
    factor: float = 1.0
    original_max_len: int | None = None
    beta_fast: float = 32.0
    beta_slow: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown RoPE scaling method {self.method!r}; choose one of {', '.join(METHODS)}")
        if isinstance(self.factor, bool) or not isinstance(self.factor, int | float) or not self.factor >= 1:
            raise ValueError(f"RoPE scaling factor must be a number >= 1, got {self.factor!r}")
        if self.original_max_len is not None and (
            isinstance(self.original_max_len, bool) or not isinstance(self.original_max_len, int) or self.original_max_len < 1
        ):
            raise ValueError(f"original_max_len must be a positive integer or None, got {self.original_max_len!r}")
        if self.method == "yarn" and self.original_max_len is None:
            raise ValueError("RoPE scaling 'yarn' needs original_max_len (the context length the model was trained at)")
        if not 0 <= self.beta_slow < self.beta_fast:
            raise ValueError(f"YaRN needs 0 <= beta_slow < beta_fast, got {self.beta_slow} and {self.beta_fast}")

    def inv_freq(self, head_dim: int, base: float = 10000.0) -> Tensor:
        """The (head_dim / 2,) angular frequencies theta_i = base^(-2i / head_dim), scaled by this method (float64)."""
        i = torch.arange(0, head_dim, 2, dtype=torch.float64)
        s = float(self.factor)
        if self.method == "ntk" and s != 1:
            if head_dim <= 2:
                raise ValueError(f"NTK-aware RoPE scaling needs a rotary head dim > 2, got {head_dim}")
            base = base * s ** (head_dim / (head_dim - 2))
        theta = base ** (-i / head_dim)
        if self.method == "pi":
            return theta / s
        if self.method == "yarn":
            turns = self.original_max_len * theta / (2 * math.pi)  # r = L / wavelength, wavelength = 2 pi / theta
            gamma = ((turns - self.beta_slow) / (self.beta_fast - self.beta_slow)).clamp(0, 1)
            return (1 - gamma) * theta / s + gamma * theta
        return theta

    @property
    def attention_factor(self) -> float:
        """What q and k are each multiplied by: YaRN's 0.1 ln(s) + 1 = sqrt(1/t); 1 for the other methods."""
        return 0.1 * math.log(self.factor) + 1 if self.method == "yarn" else 1.0


NO_SCALING = RopeScaling()


def rotary(
    x: Tensor,
    offset: int | Tensor = 0,
    base: float = 10000.0,
    scaling: RopeScaling = NO_SCALING,
    positions: Tensor | None = None,
) -> Tensor:
    """Rotate channel pairs (i, i + hd/2) of x (B, H, L, hd) by angles pos * theta_i, positions from offset
    (or given as an (L,) tensor, which may be fractional)."""
    hd = x.shape[-1]
    work = torch.promote_types(x.dtype, torch.float32)  # angles in fp32 at least (fp64 for fp64 inputs)
    inv_freq = scaling.inv_freq(hd, base).to(device=x.device, dtype=work)
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device, dtype=work) + offset
    angles = positions.to(work)[:, None] * inv_freq[None, :]  # (L, hd/2)
    m = scaling.attention_factor
    cos, sin = (angles.cos() * m).to(x.dtype), (angles.sin() * m).to(x.dtype)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def set_rope_scaling(model: nn.Module, scaling: RopeScaling) -> None:
    """Apply one RoPE scaling to every RoPE mixer of a LanguageModel (or to one mixer); no retraining."""
    if not isinstance(scaling, RopeScaling):
        raise ValueError(f"set_rope_scaling takes a RopeScaling, got {scaling!r}")
    mixers = getattr(model, "mixers", [model])
    roped = [m for m in mixers if getattr(m, "position", None) == "rope"]
    if not roped:
        kinds = sorted({f"{type(m).__name__}(position={getattr(m, 'position', None)!r})" for m in mixers})
        raise ValueError(f"RoPE scaling needs a model with RoPE layers; this one has {', '.join(kinds)}")
    for mixer in roped:
        if scaling.method == "ntk" and scaling.factor != 1 and mixer.head_dim <= 2:
            raise ValueError(f"NTK-aware RoPE scaling needs a rotary head dim > 2, got {mixer.head_dim}")
        mixer.rope_scaling = scaling
