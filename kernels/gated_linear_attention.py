"""Gated linear attention: S_t = exp(log_decay_t) * S_{t-1} + k_t^T v_t, o_t = q_t S_t.

One recurrence for the decaying fast-weight family: no decay (linear attention), one decay per head and step
(RetNet, Mamba-2) or one per key channel (GLA). Three forms: `gla_reference` (a loop over L, the ground truth),
`gated_linear_attention` (chunked: parallel inside chunks, a running state across them; on CUDA, flash-linear-
attention's kernels when installed, see fla_backend) and `gla_step` (one decode token).
Layout (B, H, L, d); q is used as given (no scaling); the state is kept in at least fp32.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .fla_backend import fla_gated_linear_attention, resolve_recurrence_backend
from .optional import common_dtype
from .validate import check_recurrence_inputs, compute_dtype, outside_autocast

DEFAULT_CHUNK = 64
# Per-channel decays enter the scores as (q_t e^{b_t - m}) . (k_s e^{m - b_s}) around the chunk's middle m; that is
# exact while |b - m| <= FACTOR_LIMIT (e^30 keeps both factors far from fp32 overflow). A chunk whose decay spans more
# (a near-zero gate) is computed from the (C, C, dk) tensor of exp(b_t - b_s) instead.
FACTOR_LIMIT = 30.0
SEGMENT_TOKENS = 1024  # tokens whose chunks are computed together (see by_segments)


@outside_autocast
def gated_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor | None = None,
    state: Tensor | None = None,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Causal gated linear attention over a sequence; returns o (B, H, L, dv) and the final state (B, H, dk, dv).

    backend: `torch` (the chunked form, chunks of chunk_size tokens), `fla` (flash-linear-attention, CUDA; its own
    tiles) or `auto` (fla where it runs, else torch); see fla_backend.resolve_recurrence_backend.
    """
    check_recurrence_inputs("gated_linear_attention", q, k, v, log_decay=log_decay, state=state, chunk_size=chunk_size)
    name = resolve_recurrence_backend(backend, q.device, common_dtype(q, k, v))
    s = start_state(q, v, state)
    if q.shape[2] == 0:
        return v.new_zeros(v.shape, dtype=q.dtype), s
    if name == "fla":
        return fla_gated_linear_attention(q, k, v, log_decay, s)
    o, s = by_segments(_gla_segment, chunk_size or DEFAULT_CHUNK, to_dtype(s.dtype, q, k, v, log_decay), s)
    return o.to(q.dtype), s


def start_state(q: Tensor, v: Tensor, state: Tensor | None) -> Tensor:
    """The state a recurrence starts from, in its compute dtype (fp32 or wider): `state`, or zeros (B, H, dk, dv)."""
    dt = compute_dtype(q)
    if state is None:
        b, h, _, dk = q.shape
        return q.new_zeros(b, h, dk, v.shape[-1], dtype=dt)
    return state.to(dt)


def to_dtype(dtype: torch.dtype, *tensors: Tensor | None) -> list[Tensor | None]:
    """Each tensor cast to `dtype` (None stays None)."""
    return [t.to(dtype) if t is not None else None for t in tensors]


@outside_autocast
def gla_reference(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None = None, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The recurrence as written, one token at a time (slow; the ground truth for the other forms)."""
    s = start_state(q, v, state)
    out_dtype, (q, k, v, log_decay) = q.dtype, to_dtype(s.dtype, q, k, v, log_decay)
    outs = []
    for t in range(q.shape[2]):
        o, s = gla_step(q[:, :, t], k[:, :, t], v[:, :, t], None if log_decay is None else log_decay[:, :, t], s)
        outs.append(o)
    o = torch.stack(outs, dim=2) if outs else v.new_zeros(v.shape)
    return o.to(out_dtype), s


@outside_autocast
def gla_step(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One token: q, k (B, H, dk), v (B, H, dv), log_decay (B, H), (B, H, dk) or None -> o (B, H, dv), new state."""
    dt = state.dtype
    q, k, v = q.to(dt), k.to(dt), v.to(dt)
    if log_decay is not None:
        a = log_decay.to(dt).exp()
        state = state * (a[..., None, None] if a.dim() == 2 else a[..., None])
    state = state + k[..., :, None] * v[..., None, :]
    return (q[..., None, :] @ state)[..., 0, :], state


def pass_chunk_states(
    chunk_kv: Tensor, chunk_log_decay: Tensor | None, state: Tensor
) -> tuple[Tensor, Tensor]:
    """States entering each chunk, S_n = a_n * S_{n-1} + U_n; chunk_kv U (B, H, n, dk, dv), log a (B, H, n[, dk]).

    Returns the states before each chunk (B, H, n, dk, dv) and the final state. Without decay this is one cumulative
    sum; with decay a loop over chunks (L / chunk steps, each a (dk, dv) multiply-add).
    """
    if chunk_log_decay is None:
        total = torch.cumsum(chunk_kv, dim=2)
        return total - chunk_kv + state[:, :, None], state + total[:, :, -1]
    a = chunk_log_decay.exp()
    a = a[..., None, None] if a.dim() == 3 else a[..., None]  # broadcast over (dk, dv) or dv
    before = []
    # unbind once: indexing chunk i inside the loop would make each backward step allocate the whole tensor (O(n^2))
    for a_i, kv_i in zip(a.unbind(2), chunk_kv.unbind(2), strict=True):
        before.append(state)
        state = a_i * state + kv_i
    return torch.stack(before, dim=2), state


def _causal_mask(size: int, device: torch.device, strict: bool = False) -> Tensor:
    return torch.ones(size, size, dtype=torch.bool, device=device).tril(-1 if strict else 0)


def chunk_decays(log_decay: Tensor, n: int, size: int, strict: bool = False):
    """Per-chunk cumulative log decay and the decay factors a chunk needs, all of magnitude <= 1.

    log_decay (B, H, L) or (B, H, L, dk) with L = n * size. Returns
    `decay` exp(b_t - b_s) for s <= t (s < t if strict), zero above: (B, H, n, C, C) or (B, H, n, C, C, dk);
    `q_decay` exp(b_t) (from the chunk's start to t), `k_decay` exp(b_last - b_s) (from s to the chunk's end), each
    (B, H, n, C[, dk]); and `chunk_log` b_last (B, H, n[, dk]).
    """
    b, h = log_decay.shape[:2]
    per_channel = log_decay.dim() == 4
    g = log_decay.reshape(b, h, n, size, *log_decay.shape[3:])  # (B, H, n, C[, dk])
    cum = torch.cumsum(g, dim=3)
    if per_channel:
        diff = cum[:, :, :, :, None, :] - cum[:, :, :, None, :, :]  # (B, H, n, C_t, C_s, dk)
        mask = _causal_mask(size, g.device, strict)[:, :, None]
    else:
        diff = cum[..., :, None] - cum[..., None, :]  # (B, H, n, C_t, C_s)
        mask = _causal_mask(size, g.device, strict)
    decay = diff.masked_fill(~mask, float("-inf")).exp()  # -inf first: exp of a positive gap could overflow
    last = cum[:, :, :, -1:]
    return decay, cum.exp(), (last - cum).exp(), last[:, :, :, 0]


def _per_channel_scores(qc: Tensor, kc: Tensor, cum: Tensor) -> Tensor:
    """scores_ts = sum_c q_tc k_sc exp(b_tc - b_sc) for s <= t, else 0; qc, kc, cum (B, H, n, C, dk) -> (B, H, n, C, C)."""
    size = qc.shape[3]
    causal = _causal_mask(size, qc.device)
    mid = (cum[:, :, :, :1] + cum[:, :, :, -1:]) / 2  # (B, H, n, 1, dk); cum decreases along the chunk
    rel = (cum - mid).clamp(-FACTOR_LIMIT, FACTOR_LIMIT)  # clamped only in chunks recomputed below
    scores = ((qc * rel.exp()) @ (kc * (-rel).exp()).transpose(-1, -2)).masked_fill(~causal, 0.0)
    wide = (cum[:, :, :, 0] - cum[:, :, :, -1] > 2 * FACTOR_LIMIT).any(-1)  # (B, H, n)
    if bool(wide.any()):
        idx = wide.nonzero(as_tuple=True)
        qw, kw, cw = qc[idx], kc[idx], cum[idx]  # (m, C, dk)
        diff = (cw[:, :, None, :] - cw[:, None, :, :]).masked_fill(~causal[:, :, None], float("-inf"))  # (m, C, C, dk)
        exact = torch.einsum("mtsc,mtc,msc->mts", diff.exp(), qw, kw)
        scores = scores.index_put(idx, exact)
    return scores


def by_segments(
    segment_fn: Callable[..., tuple[Tensor, Tensor]], size: int, tensors: list[Tensor | None], state: Tensor
) -> tuple[Tensor, Tensor]:
    """Run segment_fn(*tensors, state, size) over consecutive segments of whole chunks, carrying the state.

    A segment is about SEGMENT_TOKENS tokens: its chunks are computed together (parallel), while its working set
    stays the same whatever L, so time grows linearly with L instead of slowing as the tensors outgrow the caches.
    """
    seg = size * max(1, SEGMENT_TOKENS // size)
    if tensors[0].shape[2] <= seg:
        return segment_fn(*tensors, state, size)
    # split, not slicing in a loop: a slice's backward allocates the whole tensor each time (O(L^2) in total)
    pieces = [t.split(seg, dim=2) if t is not None else None for t in tensors]
    outs = []
    for i in range(len(pieces[0])):
        o, state = segment_fn(*(p[i] if p is not None else None for p in pieces), state, size)
        outs.append(o)
    return torch.cat(outs, dim=2), state


def pad_to_chunks(size: int, *tensors: Tensor | None) -> tuple[int, list[Tensor | None]]:
    """Zero-pad the L axis (dim 2) of each tensor up to a multiple of size; returns the chunk count and the tensors.

    Zero keys, values and betas write nothing, and a zero log decay keeps the state, so padding changes no output
    and no final state.
    """
    length = next(t for t in tensors if t is not None).shape[2]
    pad = (-length) % size
    out = []
    for t in tensors:
        if t is not None and pad:
            t = F.pad(t, (0, 0) * (t.dim() - 3) + (0, pad))
        out.append(t)
    return (length + pad) // size, out


def _gla_segment(
    q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor | None, state: Tensor, size: int
) -> tuple[Tensor, Tensor]:
    """The chunked form over one segment, all its chunks at once, from `state`."""
    b, h, length, dk = q.shape
    dv = v.shape[-1]
    per_channel = log_decay is not None and log_decay.dim() == 4
    n, (q, k, v, log_decay) = pad_to_chunks(size, q, k, v, log_decay)
    qc, kc = q.reshape(b, h, n, size, dk), k.reshape(b, h, n, size, dk)  # (B, H, n, C, dk)
    vc = v.reshape(b, h, n, size, dv)  # (B, H, n, C, dv)

    if log_decay is None:
        scores = (qc @ kc.transpose(-1, -2)).masked_fill(~_causal_mask(size, q.device), 0.0)
        q_in, k_out, chunk_log = qc, kc, None
    elif per_channel:
        cum = torch.cumsum(log_decay.reshape(b, h, n, size, dk), dim=3)  # (B, H, n, C, dk)
        scores = _per_channel_scores(qc, kc, cum)
        last = cum[:, :, :, -1:]
        q_in, k_out, chunk_log = qc * cum.exp(), kc * (last - cum).exp(), last[:, :, :, 0]
    else:
        decay, q_decay, k_decay, chunk_log = chunk_decays(log_decay, n, size)
        scores = (qc @ kc.transpose(-1, -2)) * decay
        q_in, k_out = qc * q_decay[..., None], kc * k_decay[..., None]
    chunk_kv = k_out.transpose(-1, -2) @ vc  # (B, H, n, dk, dv): what each chunk adds to the state at its end
    before, state = pass_chunk_states(chunk_kv, chunk_log, state)
    o = scores @ vc + q_in @ before  # (B, H, n, C, dv)
    return o.reshape(b, h, n * size, dv)[:, :, :length], state
