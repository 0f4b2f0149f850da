"""The selective scan's arguments (mamba_ssm's `selective_scan_fn`), their checks, and the preprocessing backends share."""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from .groups import groups_of, per_channel, ungrouped


class ScanInputs(NamedTuple):
    """One selective-scan problem, its fields in `selective_scan_fn`'s argument order: `ScanInputs(*args, **kwargs)`
    packs that function's arguments and `fn(*inputs)` passes them on unpacked.

    h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t and y_t = (C_t h_t + D u_t) * silu(z_t), from h_0 = 0, with
    dt = delta + delta_bias, through a softplus when `delta_softplus`; D, z and delta_bias are optional (None).
    Shapes: u, delta, z (batch, dim, L); A (dim, N), real; B, C (batch, N, L), shared by every channel, or
    (batch, G, N, L), one per group of dim / G consecutive channels; D, delta_bias (dim,). A scan returns y in u's
    dtype, and with `return_last_state` also h_L (batch, dim, N) in fp32. The one-token decode step
    (`selective_state_update`) packs one token the same way, every shape without its L axis.
    """

    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor | None = None
    z: Tensor | None = None
    delta_bias: Tensor | None = None
    delta_softplus: bool = False
    return_last_state: bool = False

    @property
    def tensors(self) -> tuple[Tensor | None, ...]:
        """u, delta, A, B, C, D, z, delta_bias: the fields autograd can differentiate."""
        return self[:8]

    @property
    def groups(self) -> int:
        """Number of B/C groups of a sequence: 1 when both are (batch, N, L)."""
        return groups_of(self.B, self.C)

    def check(self) -> None:
        """Raise ValueError naming the offending tensor and the expected shape if these sequence inputs do not fit."""
        u, delta, A, B, C, D, z, delta_bias = self.tensors
        given = {name: t for name, t in zip(self._fields[:8], self.tensors, strict=True) if t is not None}
        shape = {name: tuple(t.shape) for name, t in given.items()}
        if u.dim() != 3:
            raise ValueError(f"u must have shape (batch, dim, seqlen); got {shape['u']}")
        batch, dim, length = u.shape
        if not u.is_floating_point():
            raise ValueError(f"u must be a floating-point tensor; got {u.dtype}")
        if shape["delta"] != (batch, dim, length):
            raise ValueError(
                f"delta must have shape (batch, dim, seqlen) = {(batch, dim, length)} like u; got {shape['delta']}"
            )
        if A.dim() != 2 or A.shape[0] != dim:
            raise ValueError(f"A must have shape (dim, d_state) = ({dim}, N); got {shape['A']}")
        if A.is_complex():
            raise ValueError("A must be real; complex A is not supported")
        d_state = A.shape[1]
        for name, M in (("B", B), ("C", C)):
            if M.dim() == 3:
                expected: tuple[int, ...] = (batch, d_state, length)
                if shape[name] != expected:
                    raise ValueError(f"{name} must have shape (batch, d_state, seqlen) = {expected}; got {shape[name]}")
            elif M.dim() == 4:
                groups = M.shape[1]
                expected = (batch, groups, d_state, length)
                if groups < 1 or dim % groups != 0 or shape[name] != expected:
                    raise ValueError(
                        f"{name} must have shape (batch, groups, d_state, seqlen) = (batch={batch}, G, N={d_state}, "
                        f"L={length}) with G dividing dim={dim}; got {shape[name]}"
                    )
            else:
                raise ValueError(
                    f"{name} must have shape (batch, d_state, seqlen) or (batch, groups, d_state, seqlen); got {shape[name]}"
                )
        if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
            raise ValueError(f"B and C must have the same number of groups; got {B.shape[1]} and {C.shape[1]}")
        for name, v in (("D", D), ("delta_bias", delta_bias)):
            if v is not None and shape[name] != (dim,):
                raise ValueError(f"{name} must have shape (dim,) = ({dim},); got {shape[name]}")
        if z is not None and shape["z"] != (batch, dim, length):
            raise ValueError(f"z must have shape (batch, dim, seqlen) = {(batch, dim, length)} like u; got {shape['z']}")
        devices = {name: t.device for name, t in given.items()}
        if len(set(devices.values())) > 1:
            listing = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
            raise ValueError(f"all selective-scan inputs must be on one device; got {listing}")

    def channelwise(self, v: Tensor) -> Tensor:
        """A (dim,) input (D, delta_bias) in fp32, shaped to broadcast against u: (dim, 1), or (dim,) for one token."""
        v = v.float()
        return v[:, None] if self.u.dim() == 3 else v

    def discretised(self, steps: slice | None = None) -> tuple[Tensor, Tensor]:
        """(delta + delta_bias, dt) in fp32, over `steps` of L when given: dt is the softplus of the first when
        `delta_softplus` is set, else the first itself."""
        raw = (self.delta if steps is None else self.delta[..., steps]).float()
        if self.delta_bias is not None:
            raw = raw + self.channelwise(self.delta_bias)
        return raw, (F.softplus(raw) if self.delta_softplus else raw)

    def per_channel(self, M: Tensor) -> Tensor:
        """B or C in fp32 as each channel reads it: (batch, dim, N, L), or (batch, dim, N) for one token."""
        return per_channel(M.float(), self.u.shape[1], M.dim() > self.u.dim())

    def output(self, y: Tensor, last: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """What a scan returns: y, or (y, last state) with `return_last_state`."""
        return (y, last) if self.return_last_state else y

    def gradients(self, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        """What an autograd backward returns for these fields, from one gradient per tensor field in field order:
        each in its input's dtype, B's and C's summed over the groups an ungrouped (batch, N, L) input was read as;
        None for absent tensors and for the two flags."""
        du, ddelta, dA, dB, dC, dD, dz, ddelta_bias = grads
        dB, dC = ungrouped(dB, self.B), ungrouped(dC, self.C)
        full = (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)
        return (*(None if t is None else g.to(t.dtype) for t, g in zip(self.tensors, full, strict=True)), None, None)
