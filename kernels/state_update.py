"""One decode step of the selective scan: the reference scan's own step and discretisation, on one token."""

from __future__ import annotations

from torch import Tensor

from .scan_inputs import ScanInputs
from .scan_ref import advance, skip_and_gate


def _check(state: Tensor, x: ScanInputs) -> None:
    if state.dim() != 3:
        raise ValueError(f"state must have shape (batch, dim, d_state); got {tuple(state.shape)}")
    batch, dim, d_state = state.shape
    for name, t in (("u", x.u), ("delta", x.delta), ("z", x.z)):
        if t is not None and tuple(t.shape) != (batch, dim):
            raise ValueError(f"{name} must have shape (batch, dim) = {(batch, dim)}; got {tuple(t.shape)}")
    if tuple(x.A.shape) != (dim, d_state):
        raise ValueError(f"A must have shape (dim, d_state) = {(dim, d_state)}; got {tuple(x.A.shape)}")
    for name, M in (("B", x.B), ("C", x.C)):
        grouped = M.dim() == 3 and M.shape[0] == batch and M.shape[2] == d_state and dim % M.shape[1] == 0
        if tuple(M.shape) != (batch, d_state) and not grouped:
            raise ValueError(
                f"{name} must have shape (batch, d_state) = {(batch, d_state)} or (batch, groups, d_state) with "
                f"groups dividing dim={dim}; got {tuple(M.shape)}"
            )
    for name, v in (("D", x.D), ("delta_bias", x.delta_bias)):
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
    x = ScanInputs(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    _check(state, x)
    _, dt = x.discretised()
    uf = u.float()
    h, y = advance(state.float(), dt, uf, A.float(), x.per_channel(B), x.per_channel(C))
    state.copy_(h)
    return skip_and_gate(x, y, uf).to(u.dtype)
