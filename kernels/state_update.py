"""One decode step of the selective scan, with the same discretisation as every scan backend."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .groups import per_channel


def _check(state: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D, z, delta_bias) -> None:
    if state.dim() != 3:
        raise ValueError(f"state must have shape (batch, dim, d_state); got {tuple(state.shape)}")
    batch, dim, d_state = state.shape
    for name, t in (("u", u), ("delta", delta), ("z", z)):
        if t is not None and tuple(t.shape) != (batch, dim):
            raise ValueError(f"{name} must have shape (batch, dim) = {(batch, dim)}; got {tuple(t.shape)}")
    if tuple(A.shape) != (dim, d_state):
        raise ValueError(f"A must have shape (dim, d_state) = {(dim, d_state)}; got {tuple(A.shape)}")
    for name, M in (("B", B), ("C", C)):
        grouped = M.dim() == 3 and M.shape[0] == batch and M.shape[2] == d_state and dim % M.shape[1] == 0
        if tuple(M.shape) != (batch, d_state) and not grouped:
            raise ValueError(
                f"{name} must have shape (batch, d_state) = {(batch, d_state)} or (batch, groups, d_state) with "
                f"groups dividing dim={dim}; got {tuple(M.shape)}"
            )
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and tuple(v.shape) != (dim,):
            raise ValueError(f"{name} must have shape (dim,) = ({dim},); got {tuple(v.shape)}")


def selective_state_update(
    state: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Advance state (B, D, N) in place by one token: u, delta, z (B, D); A (D, N); B, C (B, [G,] N). Returns y (B, D)."""
    _check(state, u, delta, A, B, C, D, z, delta_bias)
    dim = state.shape[1]
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()
    if delta_softplus:
        dt = F.softplus(dt)
    h = torch.exp(dt[..., None] * A.float()) * state.float()
    h = h + (dt * u.float())[..., None] * per_channel(B.float(), dim, B.dim() == 3)
    state.copy_(h)
    y = (h * per_channel(C.float(), dim, C.dim() == 3)).sum(-1)
    if D is not None:
        y = y + u.float() * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(u.dtype)
