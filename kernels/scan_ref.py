"""Sequential selective scan: the obviously-correct ground truth every other backend is tested against."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .scan_inputs import ScanInputs


def advance(h: Tensor, dt: Tensor, u: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """One step in fp32: h' = exp(dt A) h + dt u B and y = C h', for h, B, C (batch, dim, N), dt, u (batch, dim)."""
    h = torch.exp(dt[..., None] * A) * h + (dt * u)[..., None] * B
    return h, (h * C).sum(-1)


def skip_and_gate(x: ScanInputs, y: Tensor, u: Tensor) -> Tensor:
    """y + D u, times silu(z), for the fields x has; u in fp32."""
    if x.D is not None:
        y = y + u * x.channelwise(x.D)
    if x.z is not None:
        y = y * F.silu(x.z.float())
    return y


def selective_scan_ref(x: ScanInputs) -> Tensor | tuple[Tensor, Tensor]:
    """The scan one `advance` at a time, in fp32; the output in u's dtype."""
    _, dt = x.discretised()
    u, A = x.u.float(), x.A.float()
    batch, d, length = u.shape
    Bx, Cx = x.per_channel(x.B), x.per_channel(x.C)  # (B, D, N, L)
    h = u.new_zeros(batch, d, A.shape[1])
    ys = []
    for t in range(length):
        h, y = advance(h, dt[:, :, t], u[:, :, t], A, Bx[..., t], Cx[..., t])
        ys.append(y)
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, d, 0)
    return x.output(skip_and_gate(x, y, u).to(x.u.dtype), h)
