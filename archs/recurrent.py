"""What the recurrent-attention mixers share: the short causal conv, the per-head output norm and gate, and one
skeleton (project -> conv -> heads -> recurrence -> norm and gate -> out) that RetNet, GLA, DeltaNet and Gated
DeltaNet fill in with their own feature maps, decays and write strengths."""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqmix import kernels
from seqmix.kernels.delta_rule import DEFAULT_CHUNK as DELTA_CHUNK
from seqmix.kernels.delta_rule import delta_rule_step
from seqmix.kernels.gated_linear_attention import DEFAULT_CHUNK as GLA_CHUNK
from seqmix.kernels.gated_linear_attention import gla_step

from .heads import merge_heads, split_heads
from .mixer import Mixer, State, positive_int


def recurrence_backend(mixer: str, backend: str) -> str:
    """backend is one of kernels.RECURRENCE_BACKENDS (auto, torch, fla), else a one-line ValueError."""
    if backend not in kernels.RECURRENCE_BACKENDS:
        choices = ", ".join(kernels.RECURRENCE_BACKENDS)
        raise ValueError(f"{mixer}: unknown backend {backend!r}; choose one of {choices}")
    return backend


def state_element_size(dtype: torch.dtype) -> int:
    """Bytes per element of a recurrent state kept in fp32 (or wider, for float64 models)."""
    return torch.empty((), dtype=torch.promote_types(dtype, torch.float32)).element_size()


class ShortConv(nn.Module):
    """Depthwise causal conv over L then SiLU, with an explicit window of the last kernel-1 inputs for decoding."""

    def __init__(self, channels: int, kernel_size: int, bias: bool = False):
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=bias)

    def empty_window(self, batch: int) -> Tensor:
        """The window before any token: zeros (B, C, kernel-1), like the zero padding of the parallel form."""
        w = self.conv.weight
        return w.new_zeros(batch, self.channels, self.kernel_size - 1)

    def forward(self, x: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, L, C) after window (B, C, kernel-1) -> SiLU(conv) (B, L, C) and the window after x."""
        full = torch.cat([window.to(x.dtype), x.transpose(1, 2)], dim=-1)  # (B, C, kernel-1 + L)
        if x.shape[1] == 0:
            return x, full
        y = F.silu(self.conv(full)).transpose(1, 2)  # (B, L, C)
        return y, full[..., full.shape[-1] - (self.kernel_size - 1) :]

    def param_count(self) -> int:
        return self.channels * self.kernel_size + (self.channels if self.conv.bias is not None else 0)


class HeadNorm(nn.Module):
    """RMSNorm over each head's channels (one weight shared by the heads), optionally times SiLU(gate)."""

    def __init__(self, head_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(head_dim))

    def forward(self, o: Tensor, gate: Tensor | None = None) -> Tensor:
        """o, gate (B, H, L, dv) -> the same shape; the norm runs in fp32."""
        of = o.float()
        y = (of * torch.rsqrt(of.square().mean(-1, keepdim=True) + self.eps)).to(o.dtype) * self.weight.to(o.dtype)
        return y if gate is None else y * F.silu(gate)


class RecurrentMixer(Mixer):
    """Multi-head recurrent attention on `kernels.gated_linear_attention` or `kernels.delta_rule`.

    q, k, v come from one projection (and an optional short conv); a subclass turns them, with the layer input, into
    the kernel's inputs (`_recurrence_inputs`). The output is normed per head, optionally gated by SiLU(g_proj(x)),
    and projected back. Decode state: the (H, dk, dv) fast-weight matrix S in fp32, the conv window when there is a
    conv, and the position when the subclass uses rotary embeddings. `backend` picks the kernels' backend for whole
    sequences (auto, torch, fla; see kernels.fla_backend); decode steps use the kernels' one-token step.
    """

    uses_position = False
    delta = False  # False: gated linear attention; True: the delta rule (needs beta)

    def _build(
        self,
        d_model: int,
        n_heads: int,
        head_k: int,
        head_v: int,
        output_gate: bool,
        conv_size: int | None,
        conv_bias: bool = False,
        norm_eps: float = 1e-5,
        chunk_size: int | None = None,
        backend: str = "auto",
    ) -> None:
        """Create the shared layers; subclasses call this from their constructor after checking their options."""
        if chunk_size is not None:
            positive_int("chunk_size", chunk_size)
        self.d_model, self.n_heads, self.head_k, self.head_v = d_model, n_heads, head_k, head_v
        self.key_dim, self.value_dim = n_heads * head_k, n_heads * head_v
        self.chunk_size, self.backend = chunk_size, recurrence_backend(self.name, backend)
        self.qkv = nn.Linear(d_model, 2 * self.key_dim + self.value_dim, bias=False)
        self.conv = ShortConv(2 * self.key_dim + self.value_dim, conv_size, conv_bias) if conv_size else None
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False) if output_gate else None
        self.norm = HeadNorm(head_v, norm_eps)
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)

    @abstractmethod
    def _recurrence_inputs(
        self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, pos: Tensor | int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Layer input x (B, L, D) and heads q, k (B, H, L, dk), v (B, H, L, dv) at positions pos.. ->
        the kernel's q, k, v, log_decay ((B, H, L[, dk]) or None) and beta ((B, H, L), or None for linear attention)."""

    @abstractmethod
    def _extra_params(self) -> int:
        """Parameters beyond the shared projections, conv and norm (decay and beta projections, ...)."""

    def _mix(self, x: Tensor, state: State | None, step: bool = False) -> tuple[Tensor, State]:
        b, length, _ = x.shape
        qkv = self.qkv(x)  # (B, L, 2 Kd + Vd)
        new_state: State = {}
        if self.conv is not None:
            window = state["conv"] if state is not None else self.conv.empty_window(b)
            qkv, new_state["conv"] = self.conv(qkv, window)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=-1)
        q, k, v = split_heads(q, self.n_heads), split_heads(k, self.n_heads), split_heads(v, self.n_heads)
        pos = state["pos"] if state is not None and self.uses_position else 0
        q, k, v, log_decay, beta = self._recurrence_inputs(x, q, k, v, pos)
        s = state["S"] if state is not None else None
        if step:  # one token through the kernels' recurrent step
            g = None if log_decay is None else log_decay[:, :, 0]
            if self.delta:
                o, s = delta_rule_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], beta[:, :, 0], g, s)
            else:
                o, s = gla_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], g, s)
            o = o[:, :, None]
        elif self.delta:
            o, s = kernels.delta_rule(q, k, v, beta, log_decay, s, self.chunk_size, self.backend)
        else:
            o, s = kernels.gated_linear_attention(q, k, v, log_decay, s, self.chunk_size, self.backend)
        o = o.to(v.dtype)  # the kernels answer in q's dtype, which the feature map may have widened to fp32
        new_state["S"] = s
        if self.uses_position:
            new_state["pos"] = torch.as_tensor(pos, device=x.device).to(torch.long) + length
        gate = split_heads(self.g_proj(x), self.n_heads) if self.g_proj is not None else None
        return self.o_proj(merge_heads(self.norm(o, gate))), new_state

    def forward(self, x: Tensor) -> Tensor:
        return self._mix(x, None)[0]

    def init_state(self, batch: int, max_len: int = 0) -> State:
        w = self.qkv.weight
        dtype = torch.promote_types(w.dtype, torch.float32)
        state = {"S": w.new_zeros(batch, self.n_heads, self.head_k, self.head_v, dtype=dtype)}
        if self.conv is not None:
            state["conv"] = self.conv.empty_window(batch)
        if self.uses_position:
            state["pos"] = torch.zeros((), dtype=torch.long, device=w.device)
        return state

    def prefill(self, x: Tensor, max_len: int | None = None) -> tuple[Tensor, State]:
        y, state = self._mix(x, self.init_state(x.shape[0]))
        if self.conv is not None:  # in the parameters' dtype, like init_state (under autocast x may be bf16)
            state["conv"] = state["conv"].to(self.qkv.weight.dtype).contiguous()
        return y, state

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        y, new = self._mix(x[:, None, :], state, step=True)
        if self.conv is not None:
            new["conv"] = new["conv"].to(state["conv"].dtype).contiguous()
        state.update(new)  # the contract: the caller's state dict is the one that advances
        return y[:, 0], state

    def param_count(self) -> int:
        d, kd, vd = self.d_model, self.key_dim, self.value_dim
        shared = d * (2 * kd + vd) + (d * vd if self.g_proj is not None else 0) + self.head_v + vd * d
        return shared + (self.conv.param_count() if self.conv is not None else 0) + self._extra_params()

    def _recurrence_flops(self, seq_len: int) -> float:
        """Forward FLOPs per token of the chunked kernel's matmuls (a chunk of c tokens is computed whole)."""
        h, dk, dv = self.n_heads, self.head_k, self.head_v
        if self.delta:
            c = self.chunk_size or DELTA_CHUNK
            # K K^T and Q K^T; the unit-triangular solve for [U | W]; W S_0, K^T u, Q S_0; scores @ u
            per_head = 4 * c * dk + c * (dv + dk) + 6 * dk * dv + 2 * c * dv
        else:
            c = self.chunk_size or GLA_CHUNK
            # q k^T scores (per channel: between q and k scaled by their decays), scores @ v, k^T v, q S
            per_head = 2 * c * dk + 2 * c * dv + 4 * dk * dv
        padded = -(-max(seq_len, 1) // c) * c
        return h * per_head * padded / max(seq_len, 1)

    def flops_per_token(self, seq_len: int) -> float:
        d, kd, vd = self.d_model, self.key_dim, self.value_dim
        proj = 2 * d * (2 * kd + vd) + (2 * d * vd if self.g_proj is not None else 0) + 2 * vd * d
        conv = 2 * self.conv.channels * self.conv.kernel_size if self.conv is not None else 0
        return proj + conv + self._recurrence_flops(seq_len) + self._extra_flops()

    def _extra_flops(self) -> float:
        """Forward FLOPs per token of the subclass's own projections (decay, beta)."""
        return 2 * self._extra_params()

    def state_bytes(self, seq_len: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
        elem = torch.empty((), dtype=dtype).element_size()
        total = self.n_heads * self.head_k * self.head_v * state_element_size(dtype)
        if self.conv is not None:
            total += self.conv.channels * (self.conv.kernel_size - 1) * elem
        return batch * total + (8 if self.uses_position else 0)  # the position is one int64 for the batch


def head_dims(
    mixer: str, d_model: int, n_heads: int, expand_k: float, expand_v: float, even_k: bool = False,
    v_per_head_k: bool = False,
) -> tuple[int, int]:
    """Per-head key and value widths, d_model * expand / n_heads (the value width head_k * expand_v when
    v_per_head_k, as Gated DeltaNet defines it), or a ValueError naming what does not divide."""
    positive_int("d_model", d_model)
    positive_int("n_heads", n_heads)
    for name, expand in (("expand_k", expand_k), ("expand_v", expand_v)):
        if isinstance(expand, bool) or not isinstance(expand, int | float) or expand <= 0:
            raise ValueError(f"{mixer}: {name} must be a positive number, got {expand!r}")
    key_width = d_model * expand_k
    if key_width != int(key_width) or int(key_width) % n_heads:
        raise ValueError(
            f"{mixer}: d_model={d_model} * expand_k={expand_k} = {key_width:g} must be a whole multiple of n_heads={n_heads}"
        )
    head_k = int(key_width) // n_heads
    if even_k and head_k % 2:
        raise ValueError(
            f"{mixer}: rotary embeddings need an even key head dim; d_model={d_model} * expand_k={expand_k} / "
            f"n_heads={n_heads} = {head_k}"
        )
    if v_per_head_k:
        head_v = head_k * expand_v
        if head_v != int(head_v):
            raise ValueError(f"{mixer}: head_k={head_k} * expand_v={expand_v} = {head_v:g} must be a whole number")
        return head_k, int(head_v)
    value_width = d_model * expand_v
    if value_width != int(value_width) or int(value_width) % n_heads:
        raise ValueError(
            f"{mixer}: d_model={d_model} * expand_v={expand_v} = {value_width:g} must be a whole multiple of n_heads={n_heads}"
        )
    return head_k, int(value_width) // n_heads


def optional_conv_size(mixer: str, conv_size: int | None) -> int | None:
    """conv_size is a positive kernel width or None (no short conv)."""
    if conv_size is not None and (isinstance(conv_size, bool) or not isinstance(conv_size, int) or conv_size < 1):
        raise ValueError(f"{mixer}: conv_size must be a positive integer or None (no short conv), got {conv_size!r}")
    return conv_size
