"""Sliding-window causal attention with optional attention sinks (StreamingLLM): banded training, ring-buffer decode."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .attention import Attention, alibi_slopes
from .mixer import State, positive_int, register


def banded_attention(
    q: Tensor, k: Tensor, v: Tensor, window: int, n_sinks: int = 0, slopes: Tensor | None = None
) -> Tensor:
    """Causal attention where query i sees keys i - window < j <= i and the sink keys j < n_sinks, in chunks of
    `window` queries through SDPA: O(L * (window + n_sinks)) time and memory. q (B, H, L, hd); k, v (B, Hkv, L, hd);
    slopes: ALiBi's per-head slopes, or None."""
    b, h, length, hd = q.shape
    hkv = k.shape[1]
    c = min(window, length)  # queries per chunk
    n = math.ceil(length / c)
    pad = n * c - length
    span = c + window - 1  # keys a chunk needs: its own c and the window - 1 before its first query

    def chunk_keys(t: Tensor) -> Tensor:  # (B, Hkv, L, hd) -> (B * N, Hkv, span, hd), chunk i's keys from i*c - W + 1
        return F.pad(t, (0, 0, window - 1, pad)).unfold(2, span, c).permute(0, 2, 1, 4, 3).reshape(b * n, hkv, span, hd)

    qc = F.pad(q, (0, 0, 0, pad)).view(b, h, n, c, hd).transpose(1, 2).reshape(b * n, h, c, hd)  # (B * N, H, C, hd)
    kc, vc = chunk_keys(k), chunk_keys(v)
    qpos = torch.arange(n * c, device=q.device).view(n, c)  # (N, C)
    kpos = torch.arange(span, device=q.device) + torch.arange(n, device=q.device)[:, None] * c - (window - 1)  # (N, span)
    dist = qpos[:, :, None] - kpos[:, None, :]  # (N, C, span)
    mask = (dist >= 0) & (dist < window) & (kpos >= n_sinks)[:, None, :]  # sinks are seen through their own columns
    s = min(n_sinks, length)
    if s:  # every chunk also attends to the s sink keys, prepended to its own
        sinks = lambda t: t[:, None, :, :s].expand(b, n, hkv, s, hd).reshape(b * n, hkv, s, hd)  # noqa: E731
        kc, vc = torch.cat([sinks(k), kc], dim=2), torch.cat([sinks(v), vc], dim=2)  # (B * N, Hkv, S + span, hd)
        sink_dist = qpos[:, :, None] - torch.arange(s, device=q.device)  # (N, C, S)
        dist, mask = torch.cat([sink_dist, dist], -1), torch.cat([sink_dist >= 0, mask], -1)
    if slopes is not None:
        bias = -slopes.to(q).view(1, h, 1, 1) * dist[:, None]  # (N, H, C, keys)
        attn_mask = bias.masked_fill(~mask[:, None], float("-inf")).repeat(b, 1, 1, 1)  # (B * N, H, C, keys)
    else:
        attn_mask = mask[:, None].repeat(b, 1, 1, 1)  # (B * N, 1, C, keys)
    y = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=attn_mask, enable_gqa=h != hkv)  # (B * N, H, C, hd)
    return y.view(b, n, h, c, hd).transpose(1, 2).reshape(b, h, n * c, hd)[:, :, :length]


@register
class SlidingWindow(Attention):
    """Causal softmax attention over the last `window` tokens, plus the first `n_sinks` tokens for every query;
    its decode state is a ring buffer of window keys and values (and the sinks'), the same size at every length."""

    name = "sliding_window"

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        n_kv_heads: int | None = None,
        window: int = 256,
        n_sinks: int = 0,
        position: str = "rope",
        rope_base: float = 10000.0,
    ):
        positive_int("window", window)
        if isinstance(n_sinks, bool) or not isinstance(n_sinks, int) or n_sinks < 0:
            raise ValueError(f"n_sinks must be a non-negative integer (0: no attention sinks), got {n_sinks!r}")
        super().__init__(d_model, n_heads, n_kv_heads, position, rope_base)
        self.window, self.n_sinks = window, n_sinks

    def visible(self, dist: Tensor, kpos: Tensor) -> Tensor:
        return super().visible(dist, kpos) & ((dist < self.window) | (kpos < self.n_sinks))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 0:
            return x.clone()
        q, k, v = self.project(x)
        slopes = alibi_slopes(self.n_heads) if self.position == "alibi" else None
        return self.merge(banded_attention(q, k, v, self.window, self.n_sinks, slopes))

    def slot(self, pos: Tensor) -> Tensor:
        """The buffer slot of each position: sinks in slots 0..S-1, the rest in the ring after them."""
        s = self.n_sinks
        return torch.where(pos < s, pos, s + (pos - s) % self.window)

    def slot_positions(self, n_tokens: int, device: torch.device) -> Tensor:
        """The (S + W,) position each slot holds after n_tokens tokens (-1: empty)."""
        s, w = self.n_sinks, self.window
        sinks = torch.arange(s, device=device)
        r = torch.arange(w, device=device)
        back = n_tokens - 1 - s - r  # how far the newest position of ring slot r lies past its first
        ring = torch.where(back >= 0, s + r + w * torch.div(back, w, rounding_mode="floor"), -1)
        return torch.cat([torch.where(sinks < n_tokens, sinks, -1), ring])

    def init_state(self, batch: int, max_len: int = 0) -> State:
        if self.kv_policy is not None:
            return self.kv_policy.init_state(self, batch, max_len)
        p = self.qkv.weight
        shape = (batch, self.n_kv_heads, self.n_sinks + self.window, self.head_dim)
        return {"k": p.new_zeros(shape), "v": p.new_zeros(shape), "pos": torch.zeros((), dtype=torch.long, device=p.device)}

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        if self.kv_policy is not None:
            return self.kv_policy.prefill(self, x, max_len)
        b, length, _ = x.shape
        state = self.init_state(b)
        if length:
            _, k, v = self.project(x)
            s = min(self.n_sinks, length)
            keep = torch.cat([torch.arange(s), torch.arange(max(s, length - self.window), length)]).to(x.device)
            slots = self.slot(keep)
            state["k"][:, :, slots] = k[:, :, keep]
            state["v"][:, :, slots] = v[:, :, keep]
        state["pos"].fill_(length)
        return self.forward(x), state

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        if self.kv_policy is not None:
            return self.kv_policy.step(self, x, state)
        pos = int(state["pos"])
        q, k, v = self.project(x[:, None, :], pos)
        slot = int(self.slot(torch.tensor(pos)))
        state["k"][:, :, slot] = k[:, :, 0]
        state["v"][:, :, slot] = v[:, :, 0]
        state["pos"] += 1
        if pos + 1 >= self.n_sinks + self.window and self.position != "alibi":  # every slot full and in view
            y = F.scaled_dot_product_attention(q, state["k"], state["v"], enable_gqa=self.n_kv_heads != self.n_heads)
        else:
            kpos = self.slot_positions(pos + 1, x.device)
            y = self.decode_attend(q, state["k"], state["v"], torch.tensor([pos], device=x.device), kpos)
        return self.merge(y)[:, 0], state

    def flops_per_token(self, seq_len: int) -> float:
        # what banded_attention computes, densely: chunks of c queries against c + window - 1 keys and the sinks
        length = max(seq_len, 1)
        c = min(self.window, length)
        n = math.ceil(length / c)
        keys = c + self.window - 1 + min(self.n_sinks, length)
        return 2 * self.param_count() + 2 * 2 * self.d_model * n * c * keys / length

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        if self.kv_policy is not None:
            return self.kv_policy.state_bytes(self, seq_len, batch, dtype)
        elem = torch.empty((), dtype=dtype).element_size()
        return 2 * batch * (self.n_sinks + self.window) * self.kv_dim * elem + 8  # ring buffer, plus the position
