"""Multi-head causal softmax attention (RoPE, ALiBi or no positions; grouped-query heads) with a KV-cache decode."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import merge_heads, split_heads
from .mixer import Mixer, State, positive_int, register
from .rope import NO_SCALING, RopeScaling, rotary

IMPLS = ("sdpa", "explicit")
POSITIONS = ("rope", "alibi", "none")


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi's per-head slopes (Press et al. 2022): 2^(-8i/n) for n a power of two, else interleaved from 2n."""

    def geometric(n: int) -> list[float]:
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]

    pow2 = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(pow2) + geometric(2 * pow2)[0::2][: n_heads - pow2]
    return torch.tensor(slopes, dtype=torch.float64)


@register
class Attention(Mixer):
    """Causal softmax attention; state is the KV cache (n_kv_heads heads of keys and values), growing with context.

    position: "rope" (rotary, base rope_base), "alibi" (linear distance penalties) or "none" (NoPE).
    n_kv_heads: key/value heads shared by groups of query heads (grouped-query; 1 is multi-query); default n_heads.
    """

    name = "attention"

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        n_kv_heads: int | None = None,
        position: str = "rope",
        rope_base: float = 10000.0,
        impl: str = "sdpa",
    ):
        super().__init__()
        positive_int("d_model", d_model)
        positive_int("n_heads", n_heads)
        n_kv_heads = n_heads if n_kv_heads is None else positive_int("n_kv_heads", n_kv_heads)
        if d_model % n_heads:
            raise ValueError(f"{self.name}: d_model={d_model} is not divisible by n_heads={n_heads}")
        if n_heads % n_kv_heads:
            raise ValueError(f"{self.name}: n_heads={n_heads} is not divisible by n_kv_heads={n_kv_heads}")
        if position not in POSITIONS:
            raise ValueError(f"{self.name}: unknown position {position!r}; choose one of {', '.join(POSITIONS)}")
        if position == "rope" and (d_model // n_heads) % 2:
            raise ValueError(
                f"{self.name}: rotary embeddings need an even head dim; d_model={d_model} / n_heads={n_heads} "
                f"= {d_model // n_heads} (or use position='alibi' or 'none')"
            )
        if isinstance(rope_base, bool) or not isinstance(rope_base, int | float) or not rope_base > 1:
            raise ValueError(f"{self.name}: rope_base must be a number > 1, got {rope_base!r}")
        if impl not in IMPLS:
            raise ValueError(f"{self.name}: unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
        self.d_model, self.n_heads, self.n_kv_heads, self.head_dim = d_model, n_heads, n_kv_heads, d_model // n_heads
        self.kv_dim = n_kv_heads * self.head_dim
        self.position, self.rope_base, self.impl = position, float(rope_base), impl
        self.rope_scaling: RopeScaling = NO_SCALING  # set at evaluation time by set_rope_scaling
        self.kv_policy = None  # a KVPolicy (set by set_kv_policy) changes prefill / step / state_bytes; None: full cache
        self.qkv = nn.Linear(d_model, d_model + 2 * self.kv_dim, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def project(self, x: Tensor, offset: int | Tensor = 0) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, H, L, hd) and keys, values (B, Hkv, L, hd) of x (B, L, D), rotated for positions offset + i."""
        q, k, v = self.qkv(x).split([self.d_model, self.kv_dim, self.kv_dim], dim=-1)
        q = split_heads(q, self.n_heads)  # (B, H, L, hd)
        k, v = split_heads(k, self.n_kv_heads), split_heads(v, self.n_kv_heads)  # (B, Hkv, L, hd)
        if self.position == "rope":
            q = rotary(q, offset, self.rope_base, self.rope_scaling)
            k = rotary(k, offset, self.rope_base, self.rope_scaling)
        return q, k, v

    def merge(self, y: Tensor) -> Tensor:
        """Heads (B, H, L, hd) back to (B, L, D) through the output projection."""
        return self.out(merge_heads(y))

    def visible(self, dist: Tensor, kpos: Tensor) -> Tensor:
        """Which keys a query sees, from distance query - key and key position (-1: an empty cache slot)."""
        return (dist >= 0) & (kpos >= 0)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, qpos: Tensor, kpos: Tensor) -> tuple[Tensor, Tensor]:
        """Explicit softmax attention of q (B, H, Lq, hd) at positions qpos (Lq,) over k, v (B, Hkv, Lk, hd) at kpos
        (Lk,) or (B, Hkv, Lk); returns y (B, H, Lq, hd) and the probabilities (B, Hkv, H / Hkv, Lq, Lk)."""
        b, h, lq, hd = q.shape
        g = h // self.n_kv_heads
        qg = q.reshape(b, self.n_kv_heads, g, lq, hd)  # query heads grouped by the key/value head they share
        scores = qg @ k[:, :, None].transpose(-1, -2) / math.sqrt(hd)  # (B, Hkv, g, Lq, Lk)
        if kpos.ndim == 1:
            kpos = kpos.view(1, 1, -1)  # one set of slot positions shared by every sequence and head
        kp = kpos[:, :, None, None, :]  # (B or 1, Hkv or 1, 1, 1, Lk)
        dist = qpos.view(-1, 1) - kp  # (B or 1, Hkv or 1, 1, Lq, Lk)
        if self.position == "alibi":
            slopes = alibi_slopes(h).to(scores).view(1, self.n_kv_heads, g, 1, 1)
            scores = scores - slopes * dist
        probs = scores.masked_fill(~self.visible(dist, kp), float("-inf")).softmax(-1)
        y = probs @ v[:, :, None]  # (B, Hkv, g, Lq, hd)
        return y.reshape(b, h, lq, hd), probs

    def decode_attend(self, q: Tensor, k: Tensor, v: Tensor, qpos: Tensor, kpos: Tensor) -> Tensor:
        """attend()'s output, through SDPA's fused kernel when the slot positions (Lk,) are shared and no ALiBi bias
        is needed (about 2x faster per decode step on CPU than the explicit form)."""
        if self.position == "alibi" or kpos.ndim != 1:
            return self.attend(q, k, v, qpos, kpos)[0]
        mask = self.visible(qpos.view(-1, 1) - kpos, kpos)  # (Lq, Lk)
        gqa = self.n_kv_heads != self.n_heads
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bool(mask.all()) else mask, enable_gqa=gqa)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.project(x)
        if self.impl == "explicit":  # materialise the L x L score matrix: the O(L^2)-memory textbook form
            pos = torch.arange(x.shape[1], device=x.device)
            return self.merge(self.attend(q, k, v, pos, pos)[0])
        gqa = self.n_kv_heads != self.n_heads
        if self.position == "alibi":
            pos = torch.arange(x.shape[1], device=x.device)
            dist = pos[:, None] - pos[None, :]  # (L, L)
            bias = -alibi_slopes(self.n_heads).to(q).view(-1, 1, 1) * dist  # (H, L, L)
            bias = bias.masked_fill(dist < 0, float("-inf"))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=gqa)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        return self.merge(y)

    def init_state(self, batch: int, max_len: int = 0) -> State:
        if self.kv_policy is not None:
            return self.kv_policy.init_state(self, batch, max_len)
        p = self.qkv.weight
        shape = (batch, self.n_kv_heads, max_len, self.head_dim)
        return {
            "k": p.new_zeros(shape),
            "v": p.new_zeros(shape),
            "pos": torch.zeros((), dtype=torch.long, device=p.device),
        }

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        if self.kv_policy is not None:
            return self.kv_policy.prefill(self, x, max_len)
        b, length, _ = x.shape
        q, k, v = self.project(x)
        state = self.init_state(b, max(length, max_len or 0))
        state["k"][:, :, :length] = k
        state["v"][:, :, :length] = v
        state["pos"].fill_(length)
        return self.forward(x) if length else x.new_zeros(b, 0, self.d_model), state

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        if self.kv_policy is not None:
            return self.kv_policy.step(self, x, state)
        pos = int(state["pos"])
        q, k, v = self.project(x[:, None, :], pos)
        if pos >= state["k"].shape[2]:  # out of room: double the cache
            for key in ("k", "v"):
                b, h, cap, hd = state[key].shape
                state[key] = torch.cat([state[key], state[key].new_zeros(b, h, max(cap, 1), hd)], dim=2)
        state["k"][:, :, pos] = k[:, :, 0]
        state["v"][:, :, pos] = v[:, :, 0]
        state["pos"] += 1
        kpos = torch.arange(pos + 1, device=x.device)
        y = self.decode_attend(q, state["k"][:, :, : pos + 1], state["v"][:, :, : pos + 1], kpos[-1:], kpos)
        return self.merge(y)[:, 0], state

    def param_count(self) -> int:
        return self.d_model * (self.d_model + 2 * self.kv_dim) + self.d_model * self.d_model

    def flops_per_token(self, seq_len: int) -> float:
        # projections, then q.k over all L keys and the weighted sum of L values, counted densely:
        # that is what SDPA's math path and torch's flop counter do (a causal-aware kernel does about half).
        return 2 * self.param_count() + 2 * 2 * seq_len * self.d_model

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        if self.kv_policy is not None:
            return self.kv_policy.state_bytes(self, seq_len, batch, dtype)
        elem = torch.empty((), dtype=dtype).element_size()
        return 2 * batch * seq_len * self.kv_dim * elem + 8  # K and V, plus the int64 position
