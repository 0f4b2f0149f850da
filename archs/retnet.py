"""RetNet's multi-scale retention (Sun et al. 2023): linear attention with a fixed decay per head."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .attention import rotary
from .mixer import register
from .recurrent import RecurrentMixer, head_dims


@register
class RetNet(RecurrentMixer):
    """Multi-scale retention: rotary q and k, S_t = gamma_h S_{t-1} + k^T v with gamma_h = 1 - 2^(-5 - h), per-head
    RMSNorm and a SiLU output gate (the published layer's defaults: expand_k 1, expand_v 2, q scaled by dk^-1/2).

    n_heads defaults to 4 rather than the paper's head width of 256, so the small models this toolkit trains keep an
    even key head dim for the rotary embedding."""

    name = "retnet"
    uses_position = True

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        expand_k: float = 1.0,
        expand_v: float = 2.0,
        output_gate: bool = True,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        head_k, head_v = head_dims(self.name, d_model, n_heads, expand_k, expand_v, even_k=True)
        self._build(d_model, n_heads, head_k, head_v, output_gate, None, norm_eps=norm_eps, chunk_size=chunk_size,
                    backend=backend)
        gammas = 1.0 - 2.0 ** (-5.0 - torch.arange(n_heads, dtype=torch.float64))
        self.register_buffer("log_gamma", torch.log(gammas).float(), persistent=False)  # (H,)

    def _recurrence_inputs(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, pos):
        b, h, length, _ = q.shape
        q, k = rotary(q, pos) * (1.0 / math.sqrt(self.head_k)), rotary(k, pos)
        log_decay = self.log_gamma.to(torch.promote_types(q.dtype, torch.float32))[None, :, None].expand(b, h, length)
        return q, k, v, log_decay, None

    def _extra_params(self) -> int:
        return 0

    def _extra_flops(self) -> float:
        return 2 * 3 * (2 * self.key_dim)  # rotary on q and k: two products and a sum per channel
