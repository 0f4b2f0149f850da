"""Causal linear attention: a positive feature map, a (heads, dk, dv) fast-weight state, on the gated linear-attention
kernel with no decay."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqmix.kernels import gated_linear_attention
from seqmix.kernels.gated_linear_attention import gla_step

from .heads import merge_heads, split_heads
from .mixer import Mixer, State, positive_int, register
from .recurrent import recurrence_backend, state_element_size

FEATURE_MAPS = {
    "elu": lambda x: F.elu(x) + 1.0,
    "relu": F.relu,
    "identity": lambda x: x,
}


@register
class LinearAttention(Mixer):
    """Causal linear attention (Katharopoulos et al.); its decode state is fixed-size, whatever the context.
    `backend` picks the kernel's backend for whole sequences (auto, torch, fla; see kernels.fla_backend)."""

    name = "linear_attention"

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        feature_map: str = "elu",
        normalize: bool = True,
        chunk_size: int = 64,
        backend: str = "auto",
    ):
        super().__init__()
        positive_int("d_model", d_model)
        positive_int("n_heads", n_heads)
        positive_int("chunk_size", chunk_size)
        if d_model % n_heads:
            raise ValueError(f"linear_attention: d_model={d_model} is not divisible by n_heads={n_heads}")
        if feature_map not in FEATURE_MAPS:
            raise ValueError(
                f"linear_attention: unknown feature_map {feature_map!r}; choose one of {', '.join(FEATURE_MAPS)}"
            )
        if normalize and feature_map == "identity":
            raise ValueError(
                "linear_attention: normalize=True divides by q.sum(k), which an identity feature map can drive "
                "to zero; use feature_map='elu' or 'relu', or normalize=False"
            )
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.feature_map, self.normalize, self.chunk_size, self.eps = feature_map, normalize, chunk_size, 1e-6
        self.backend = recurrence_backend(self.name, backend)
        self.phi = FEATURE_MAPS[feature_map]
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = (split_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))  # (B, H, L, hd) each
        return self.phi(q), self.phi(k), v

    def _merge(self, y: Tensor) -> Tensor:
        return self.out(merge_heads(y))

    def _values(self, v: Tensor) -> Tensor:
        """With normalize, the normaliser z = sum_s k_s rides along as an extra value column of ones: q S = [q S_v, q z]."""
        return torch.cat([v, torch.ones_like(v[..., :1])], dim=-1) if self.normalize else v

    def _output(self, o: Tensor) -> Tensor:
        return o[..., :-1] / (o[..., -1:] + self.eps) if self.normalize else o

    def _mix(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        q, k, v = self._heads(x)
        o, s = gated_linear_attention(q, k, self._values(v), state=None if state is None else state["S"],
                                      chunk_size=self.chunk_size, backend=self.backend)
        return self._merge(self._output(o)), {"S": s}

    def forward(self, x: Tensor) -> Tensor:
        return self._mix(x, None)[0]

    def init_state(self, batch: int, max_len: int = 0) -> State:
        p = self.qkv.weight
        dv = self.head_dim + (1 if self.normalize else 0)
        dtype = torch.promote_types(p.dtype, torch.float32)
        return {"S": p.new_zeros(batch, self.n_heads, self.head_dim, dv, dtype=dtype)}

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        return self._mix(x, self.init_state(x.shape[0]))

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        q, k, v = (t[:, :, 0] for t in self._heads(x[:, None, :]))
        o, state["S"] = gla_step(q, k, self._values(v), None, state["S"])
        return self._merge(self._output(o.to(x.dtype))[:, :, None])[:, 0], state

    def param_count(self) -> int:
        return 4 * self.d_model * self.d_model

    def flops_per_token(self, seq_len: int) -> float:
        d, hd, c = self.d_model, self.head_dim, self.chunk_size
        dv = hd + (1 if self.normalize else 0)  # the normaliser's column of ones
        padded = -(-seq_len // c) * c  # the chunked form computes on whole chunks
        # per head and token: within-chunk q.k and scores @ v (dense over the chunk); k^T v per chunk; q @ S
        mixing = self.n_heads * padded * (2 * c * hd + 2 * c * dv + 4 * hd * dv)
        return 2 * 4 * d * d + mixing / max(seq_len, 1)

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        dv = self.head_dim + (1 if self.normalize else 0)  # S and, as its last column, the normaliser z
        return batch * self.n_heads * self.head_dim * dv * state_element_size(dtype)
