"""DeltaNet (Schlag et al. 2021; Yang et al. 2024): linear attention that writes with the delta rule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mixer import register
from .recurrent import RecurrentMixer, head_dims, optional_conv_size


def delta_features(q: Tensor, k: Tensor, v: Tensor, has_conv: bool, head_k: int) -> tuple[Tensor, Tensor, Tensor]:
    """SiLU (unless the short conv applied it), L2-normalised q and k, q scaled by dk^-1/2."""
    if not has_conv:
        q, k, v = F.silu(q), F.silu(k), F.silu(v)
    # in fp32 (the kernel's dtype anyway): the delta rule's v - k S cancels, and bf16-rounded unit keys showed in it
    dtype = torch.promote_types(q.dtype, torch.float32)
    q, k = F.normalize(q.to(dtype), dim=-1), F.normalize(k.to(dtype), dim=-1)
    return q * (1.0 / math.sqrt(head_k)), k, v


@register
class DeltaNet(RecurrentMixer):
    """DeltaNet: S_t = S_{t-1} + k_t^T beta_t (v_t - k_t S_{t-1}) with beta_t = sigmoid(w_b x_t) per head, SiLU and L2
    normalisation on q and k, a short causal conv (size 4, SiLU) on q, k, v and a per-head RMSNorm; the published
    layer's defaults (4 heads, expand_k = expand_v = 1, no output gate)."""

    name = "deltanet"
    delta = True

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        expand_k: float = 1.0,
        expand_v: float = 1.0,
        conv_size: int | None = 4,
        conv_bias: bool = False,
        output_gate: bool = False,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        head_k, head_v = head_dims(self.name, d_model, n_heads, expand_k, expand_v)
        conv_size = optional_conv_size(self.name, conv_size)
        self._build(d_model, n_heads, head_k, head_v, output_gate, conv_size, conv_bias, norm_eps, chunk_size, backend)
        self.b_proj = nn.Linear(d_model, n_heads, bias=False)

    def _recurrence_inputs(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, pos):
        q, k, v = delta_features(q, k, v, self.conv is not None, self.head_k)
        beta = self.b_proj(x).sigmoid().transpose(1, 2)  # (B, H, L)
        return q, k, v, None, beta

    def _extra_params(self) -> int:
        return self.d_model * self.n_heads
