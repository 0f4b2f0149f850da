"""Multi-head layout, shared by every attention-like mixer: (B, L, H * d) <-> (B, H, L, d)."""

from __future__ import annotations

from torch import Tensor


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, L, H * d) -> (B, H, L, d)."""
    b, length, width = x.shape
    return x.view(b, length, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(y: Tensor) -> Tensor:
    """(B, H, L, d) -> (B, L, H * d)."""
    b, h, length, d = y.shape
    return y.transpose(1, 2).reshape(b, length, h * d)
