"""Causal linear attention in chunked parallel form (quadratic inside a chunk, a running state across chunks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def chunked_linear_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    chunk_size: int = 64,
    state: Tensor | None = None,
    normalizer: Tensor | None = None,
    normalize: bool = True,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """y_t = q_t S_t (/ q_t z_t) with S_t = S_0 + sum_{s<=t} k_s^T v_s; q, k (B, H, L, dk), v (B, H, L, dv).

    Returns the outputs (B, H, L, dv), the final state S (B, H, dk, dv) and, when normalising, z (B, H, dk).
    Every chunk's starting state comes from one cumulative sum over per-chunk k^T v, so there is no Python
    loop over the sequence; the work is O(L * chunk * d + L * dk * dv).
    """
    b, h, length, dk = q.shape
    dv = v.shape[-1]
    if state is None:
        state = q.new_zeros(b, h, dk, dv)
    if normalize and normalizer is None:
        normalizer = q.new_zeros(b, h, dk)
    pad = (-length) % chunk_size
    if pad:  # zero keys and values add nothing to the state
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    n = (length + pad) // chunk_size
    qc, kc, vc = (t.reshape(b, h, n, chunk_size, t.shape[-1]) for t in (q, k, v))

    kv = kc.transpose(-1, -2) @ vc  # (B, H, n, dk, dv)
    kv_before = torch.cumsum(kv, dim=2) - kv + state[:, :, None]
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    scores = (qc @ kc.transpose(-1, -2)).masked_fill(~causal, 0.0)
    y = qc @ kv_before + scores @ vc
    new_state = state + kv.sum(dim=2)
    new_normalizer = None
    if normalize:
        ksum = kc.sum(dim=3)  # (B, H, n, dk)
        z_before = torch.cumsum(ksum, dim=2) - ksum + normalizer[:, :, None]
        den = (qc * z_before[:, :, :, None]).sum(-1) + scores.sum(-1)
        y = y / (den[..., None] + eps)
        new_normalizer = normalizer + ksum.sum(dim=2)
    y = y.reshape(b, h, n * chunk_size, dv)[:, :, :length]
    return y, new_state, new_normalizer


def linear_attention_step(
    q: Tensor, k: Tensor, v: Tensor, state: Tensor, normalizer: Tensor | None = None, eps: float = 1e-6
) -> Tensor:
    """One decode step, q, k (B, H, dk), v (B, H, dv); updates state (and normalizer) in place, returns y (B, H, dv)."""
    state += k[..., :, None] * v[..., None, :]
    y = (q[..., None, :] @ state)[..., 0, :]
    if normalizer is not None:
        normalizer += k
        y = y / ((q * normalizer).sum(-1, keepdim=True) + eps)
    return y
