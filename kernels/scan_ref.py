"""Sequential selective scan: the obviously-correct ground truth every other backend is tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .groups import per_channel


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = C_t h_t (+ D u_t, * silu(z_t)), one step at a time."""
    dtype_in = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[..., None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d, length = u.shape
    Bx, Cx = per_channel(B.float(), d, B.dim() == 4), per_channel(C.float(), d, C.dim() == 4)  # (B, D, N, L)
    h = u.new_zeros(batch, d, A.shape[1])
    ys = []
    for t in range(length):
        dA = torch.exp(delta[:, :, t, None] * A)
        h = dA * h + (delta[:, :, t] * u[:, :, t])[..., None] * Bx[..., t]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, d, 0)
    if D is not None:
        y = y + u * D.float()[..., None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y
