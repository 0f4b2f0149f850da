"""Multi-head causal softmax attention with rotary position embeddings and a KV-cache decode."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mixer import Mixer, State, positive_int, register

IMPLS = ("sdpa", "explicit")


def rotary(x: Tensor, offset: int | Tensor = 0, base: float = 10000.0) -> Tensor:
    """Rotate channel pairs (i, i + hd/2) of x (B, H, L, hd) by angles pos * base^(-2i/hd), positions from offset."""
    hd = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, hd, 2, device=x.device, dtype=torch.float32) / hd)
    pos = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32) + offset
    angles = pos[:, None] * inv_freq[None, :]
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


@register
class Attention(Mixer):
    """Causal multi-head softmax attention (RoPE); state is the KV cache, which grows with context."""

    name = "attention"

    def __init__(self, d_model: int, n_heads: int = 4, rope: bool = True, impl: str = "sdpa"):
        super().__init__()
        positive_int("d_model", d_model)
        positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(f"attention: d_model={d_model} is not divisible by n_heads={n_heads}")
        if rope and (d_model // n_heads) % 2:
            raise ValueError(
                f"attention: rotary embeddings need an even head dim; d_model={d_model} / n_heads={n_heads} "
                f"= {d_model // n_heads}"
            )
        if impl not in IMPLS:
            raise ValueError(f"attention: unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.rope, self.impl = rope, impl
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def _heads(self, x: Tensor, offset: int | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, l, _ = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rope:
            q, k = rotary(q, offset), rotary(k, offset)
        return q, k, v

    def _merge(self, y: Tensor) -> Tensor:
        b, _, l, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, l, self.d_model))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self._heads(x, 0)
        if self.impl == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # materialise the L x L score matrix: the O(L^2)-memory textbook form
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            length = x.shape[1]
            mask = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            y = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return self._merge(y)

    def init_state(self, batch: int, max_len: int = 0) -> State:
        p = self.qkv.weight
        shape = (batch, self.n_heads, max_len, self.head_dim)
        return {
            "k": p.new_zeros(shape),
            "v": p.new_zeros(shape),
            "pos": torch.zeros((), dtype=torch.long, device=p.device),
        }

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        b, length, _ = x.shape
        q, k, v = self._heads(x, 0)
        state = self.init_state(b, max(length, max_len or 0))
        state["k"][:, :, :length] = k
        state["v"][:, :, :length] = v
        state["pos"].fill_(length)
        return self.forward(x) if length else x.new_zeros(b, 0, self.d_model), state

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        pos = int(state["pos"])
        q, k, v = self._heads(x[:, None, :], pos)
        if pos >= state["k"].shape[2]:  # out of room: double the cache
            for key in ("k", "v"):
                b, h, cap, hd = state[key].shape
                state[key] = torch.cat([state[key], state[key].new_zeros(b, h, max(cap, 1), hd)], dim=2)
        state["k"][:, :, pos] = k[:, :, 0]
        state["v"][:, :, pos] = v[:, :, 0]
        state["pos"] += 1
        y = F.scaled_dot_product_attention(q, state["k"][:, :, : pos + 1], state["v"][:, :, : pos + 1])
        return self._merge(y)[:, 0], state

    def param_count(self) -> int:
        return 4 * self.d_model * self.d_model

    def flops_per_token(self, seq_len: int) -> float:
        # projections, then q.k over all L keys and the weighted sum of L values, counted densely:
        # that is what SDPA's math path and torch's flop counter do (a causal-aware kernel does about half).
        return 2 * 4 * self.d_model**2 + 2 * 2 * seq_len * self.d_model

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        elem = torch.empty((), dtype=dtype).element_size()
        return 2 * batch * seq_len * self.d_model * elem + 8  # K and V, plus the int64 position
