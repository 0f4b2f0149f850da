"""Gated DeltaNet (Yang, Kautz & Hatamizadeh 2025): the delta rule with a Mamba-2 style decay."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .deltanet import delta_features
from .mixer import register
from .recurrent import RecurrentMixer, head_dims, optional_conv_size


@register
class GatedDeltaNet(RecurrentMixer):
    """Gated DeltaNet: S_t = alpha_t S_{t-1} + k_t^T beta_t (v_t - alpha_t k_t S_{t-1}) with
    log alpha_t = -exp(A_log) softplus(w_a x_t + dt_bias) and beta_t = sigmoid(w_b x_t) per head; SiLU short conv,
    L2-normalised q and k, per-head RMSNorm times SiLU(g). The published layer's defaults: 6 heads,
    expand_k 0.75 (num_heads * head_k = 0.75 d_model), head_v = 2 head_k, A ~ U(0, 16), dt ~ LogU[1e-3, 1e-1]."""

    name = "gated_deltanet"
    delta = True

    def __init__(
        self,
        d_model: int,
        n_heads: int = 6,
        expand_k: float = 0.75,
        expand_v: float = 2.0,
        conv_size: int | None = 4,
        conv_bias: bool = False,
        output_gate: bool = True,
        norm_eps: float = 1e-5,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        chunk_size: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        head_k, head_v = head_dims(self.name, d_model, n_heads, expand_k, expand_v, v_per_head_k=True)
        conv_size = optional_conv_size(self.name, conv_size)
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"gated_deltanet: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self._build(d_model, n_heads, head_k, head_v, output_gate, conv_size, conv_bias, norm_eps, chunk_size, backend)
        self.a_proj = nn.Linear(d_model, n_heads, bias=False)
        self.b_proj = nn.Linear(d_model, n_heads, bias=False)
        A = torch.empty(n_heads, dtype=torch.float32).uniform_(0, 16).clamp_min(1e-6)  # log(0) would be -inf
        self.A_log = nn.Parameter(torch.log(A))
        dt = torch.exp(torch.rand(n_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        for p in (self.A_log, self.dt_bias):
            p._seqmix_keep_init = True
            p._no_weight_decay = True

    def _recurrence_inputs(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, pos):
        q, k, v = delta_features(q, k, v, self.conv is not None, self.head_k)
        a = self.a_proj(x).float() + self.dt_bias.float()  # (B, L, H)
        log_decay = (-self.A_log.float().exp() * F.softplus(a)).transpose(1, 2)  # (B, H, L), <= 0
        beta = self.b_proj(x).sigmoid().transpose(1, 2)  # (B, H, L)
        return q, k, v, log_decay, beta

    def _extra_params(self) -> int:
        return 2 * self.d_model * self.n_heads + 2 * self.n_heads

    def _extra_flops(self) -> float:
        return 2 * 2 * self.d_model * self.n_heads
