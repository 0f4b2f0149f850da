"""B / C groups of the selective scan: (batch, N, L) shared by every channel, or (batch, G, N, L), one per group of
dim / G consecutive channels (a one-token step drops the L)."""

from __future__ import annotations

from torch import Tensor


def groups_of(B: Tensor, C: Tensor) -> int:
    """Number of B/C groups: 1 for (batch, N, L), G for (batch, G, N, L)."""
    if B.dim() == 4:
        return B.shape[1]
    if C.dim() == 4:
        return C.shape[1]
    return 1


def as_grouped(M: Tensor, groups: int) -> Tensor:
    """(batch, N, L) -> (batch, groups, N, L) view; grouped tensors pass through."""
    if M.dim() == 4:
        return M
    return M.unsqueeze(1).expand(M.shape[0], groups, *M.shape[1:])


def per_channel(M: Tensor, dim: int, grouped: bool) -> Tensor:
    """(batch, N, ...) or, grouped, (batch, G, N, ...) -> (batch, dim, N, ...): each channel's own B or C."""
    if not grouped:
        return M.unsqueeze(1).expand(M.shape[0], dim, *M.shape[1:])  # (batch, dim, N, ...) view
    return M.repeat_interleave(dim // M.shape[1], dim=1)  # channel c reads group c // (dim / G)


def ungrouped(dM: Tensor, M: Tensor) -> Tensor:
    """The gradient of `as_grouped(M, G)` (batch, G, N, L) back in M's shape: summed over G when M is (batch, N, L)."""
    return dM.sum(1) if M.dim() == 3 else dM
