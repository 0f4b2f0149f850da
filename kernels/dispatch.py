"""One entry point for the selective scan; picks a backend that can run on the given tensors."""

from __future__ import annotations

from torch import Tensor

from .scan_ref import selective_scan_ref

BACKENDS = ("auto", "ref")


def selective_scan(
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
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan with mamba_ssm's `selective_scan_fn` semantics: u, delta, z (B, D, L); A (D, N); B, C (B, [G,] N, L)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
