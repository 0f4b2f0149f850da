"""Gated linear attention (Yang et al. 2024): a data-dependent decay per key channel."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from .mixer import positive_int, register
from .recurrent import RecurrentMixer, head_dims, optional_conv_size, split_heads


@register
class GLA(RecurrentMixer):
    """GLA: S_t = diag(alpha_t) S_{t-1} + k^T v with log alpha_t = logsigmoid(W2 W1 x_t + b) / gate_logit_normalizer
    per key channel (a rank-16 gate), q scaled by dk^-1/2, per-head RMSNorm and a SiLU output gate; the published
    layer's defaults (4 heads, expand_k 0.5, expand_v 1, normalizer 16, no short conv)."""

    name = "gla"

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        expand_k: float = 0.5,
        expand_v: float = 1.0,
        gate_low_rank_dim: int = 16,
        gate_logit_normalizer: float = 16.0,
        output_gate: bool = True,
        conv_size: int | None = None,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        head_k, head_v = head_dims(self.name, d_model, n_heads, expand_k, expand_v)
        positive_int("gate_low_rank_dim", gate_low_rank_dim)
        if isinstance(gate_logit_normalizer, bool) or not gate_logit_normalizer > 0:
            raise ValueError(f"gla: gate_logit_normalizer must be a positive number, got {gate_logit_normalizer!r}")
        conv_size = optional_conv_size(self.name, conv_size)
        self._build(d_model, n_heads, head_k, head_v, output_gate, conv_size, norm_eps=norm_eps, chunk_size=chunk_size,
                    backend=backend)
        self.gate_low_rank_dim, self.gate_logit_normalizer = gate_low_rank_dim, float(gate_logit_normalizer)
        self.gk_down = nn.Linear(d_model, gate_low_rank_dim, bias=False)
        self.gk_up = nn.Linear(gate_low_rank_dim, self.key_dim, bias=True)

    def _recurrence_inputs(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, pos):
        gk = split_heads(self.gk_up(self.gk_down(x)), self.n_heads)  # (B, H, L, dk)
        log_decay = F.logsigmoid(gk.float()) / self.gate_logit_normalizer
        return q * (1.0 / math.sqrt(self.head_k)), k, v, log_decay, None

    def _extra_params(self) -> int:
        return self.d_model * self.gate_low_rank_dim + self.gate_low_rank_dim * self.key_dim + self.key_dim

    def _extra_flops(self) -> float:
        return 2 * (self.d_model * self.gate_low_rank_dim + self.gate_low_rank_dim * self.key_dim)  # the gate's matmuls
