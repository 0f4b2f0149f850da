"""Early, explicit checks of selective-scan inputs, shared by every backend."""

from __future__ import annotations

from torch import Tensor


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_scan_inputs(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
) -> None:
    """Raise ValueError naming the offending tensor and the expected shape if the scan inputs do not fit."""
    if u.dim() != 3:
        raise ValueError(f"u must have shape (batch, dim, seqlen); got {_shape(u)}")
    batch, dim, length = u.shape
    if not u.is_floating_point():
        raise ValueError(f"u must be a floating-point tensor; got {u.dtype}")
    if _shape(delta) != (batch, dim, length):
        raise ValueError(f"delta must have shape (batch, dim, seqlen) = {(batch, dim, length)} like u; got {_shape(delta)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must have shape (dim, d_state) = ({dim}, N); got {_shape(A)}")
    if A.is_complex():
        raise ValueError("A must be real; complex A is not supported")
    d_state = A.shape[1]
    for name, M in (("B", B), ("C", C)):
        if M.dim() == 3:
            expected: tuple[int, ...] = (batch, d_state, length)
            if _shape(M) != expected:
                raise ValueError(f"{name} must have shape (batch, d_state, seqlen) = {expected}; got {_shape(M)}")
        elif M.dim() == 4:
            groups = M.shape[1]
            expected = (batch, groups, d_state, length)
            if groups < 1 or dim % groups != 0 or _shape(M) != expected:
                raise ValueError(
                    f"{name} must have shape (batch, groups, d_state, seqlen) = (batch={batch}, G, N={d_state}, "
                    f"L={length}) with G dividing dim={dim}; got {_shape(M)}"
                )
        else:
            raise ValueError(
                f"{name} must have shape (batch, d_state, seqlen) or (batch, groups, d_state, seqlen); got {_shape(M)}"
            )
    if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
        raise ValueError(f"B and C must have the same number of groups; got {B.shape[1]} and {C.shape[1]}")
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and _shape(v) != (dim,):
            raise ValueError(f"{name} must have shape (dim,) = ({dim},); got {_shape(v)}")
    if z is not None and _shape(z) != (batch, dim, length):
        raise ValueError(f"z must have shape (batch, dim, seqlen) = {(batch, dim, length)} like u; got {_shape(z)}")
    tensors = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"all selective-scan inputs must be on one device; got {listing}")


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
