"""One decode step of the selective scan, with the same discretisation as every scan backend."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


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
    """Advance state (B, D, N) in place by one token: u, delta, z (B, D); A (D, N); B, C (B, N). Returns y (B, D)."""
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()
    if delta_softplus:
        delta = F.softplus(delta)
    dA = (delta[..., None] * A.float()).exp()
    state.mul_(dA).add_((delta * u)[..., None] * B.float()[:, None, :])
    y = (state * C.float()[:, None, :]).sum(-1)
    if D is not None:
        y = y + u * D.float()
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype_in)
