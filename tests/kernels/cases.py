"""Random selective-scan problems and comparison helpers shared by the kernel tests."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from seqmix.kernels import ScanInputs
from seqmix.kernels.scan_ref import selective_scan_ref

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
FEATURES = {  # which optional inputs a case feeds the scan
    "all": {},
    "plain": dict(z=False, D=False, bias=False, softplus=False),
    "z-only": dict(D=False, bias=False),
    "D-bias-no-softplus": dict(z=False, softplus=False),
}


@dataclass(frozen=True)
class Case:
    batch: int = 2
    dim: int = 6
    d_state: int = 4
    length: int = 37
    groups: int | None = None  # None: B, C are (batch, N, L); G: (batch, G, N, L)
    z: bool = True
    D: bool = True
    bias: bool = True
    softplus: bool = True
    dtype: torch.dtype = torch.float32

    def inputs(self, seed: int = 0, dt_scale: float = 0.5) -> dict[str, torch.Tensor | None]:
        """Inputs in the Mamba regime: A < 0, delta >= 0 after the optional softplus."""
        g = torch.Generator().manual_seed(seed)

        def r(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=g)

        b, d, n, length = self.batch, self.dim, self.d_state, self.length
        bc = (b, n, length) if self.groups is None else (b, self.groups, n, length)
        delta = r(b, d, length) * dt_scale
        ins = {
            "u": r(b, d, length),
            "delta": delta if self.softplus else delta.abs(),
            "A": -(torch.rand(d, n, generator=g) * 2 + 0.1),
            "B": r(*bc),
            "C": r(*bc),
            "D": r(d) if self.D else None,
            "z": r(b, d, length) if self.z else None,
            "delta_bias": r(d) * 0.1 if self.bias else None,
        }
        return {k: (v.to(self.dtype) if v is not None and k in ("u", "delta", "B", "C", "z") else v) for k, v in ins.items()}


def run(fn, case: Case, ins: dict, grads: bool = True, seed: int = 1):
    """fn(ScanInputs)'s output, last state and (optionally) gradients of every input for a loss that uses both outputs."""
    leaves = {k: (v.detach().clone().requires_grad_(grads) if v is not None else None) for k, v in ins.items()}
    out, last = fn(ScanInputs(*(leaves[k] for k in NAMES), delta_softplus=case.softplus, return_last_state=True))
    if not grads:
        return out.detach(), last.detach(), {}
    g = torch.Generator().manual_seed(seed)
    w_out = torch.randn(out.shape, generator=g).to(out.dtype)
    w_last = torch.randn(last.shape, generator=g)
    loss = (out.float() * w_out.float()).sum() + (last * w_last).sum()
    names = [k for k in NAMES if leaves[k] is not None]
    got = torch.autograd.grad(loss, [leaves[k] for k in names])
    return out.detach(), last.detach(), dict(zip(names, got, strict=True))


def reference(case: Case, ins: dict, grads: bool = True):
    """The sequential reference on the same inputs, in fp32."""
    ins32 = {k: (v.float() if v is not None else None) for k, v in ins.items()}
    return run(selective_scan_ref, case, ins32, grads)


def assert_close(got: torch.Tensor, want: torch.Tensor, tol: float, what: str) -> None:
    """Max abs error within tol * (1 + max |want|)."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = (got.float() - want.float()).abs().max().item() if got.numel() else 0.0
    scale = 1.0 + (want.float().abs().max().item() if want.numel() else 0.0)
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol:.1g} * {scale:.3g}"


def assert_matches(got, want, tol: float = 2e-5) -> None:
    """Outputs, last states and every gradient agree."""
    assert_close(got[0], want[0], tol, "output")
    assert_close(got[1], want[1], tol, "last state")
    assert got[2].keys() == want[2].keys()
    for name in want[2]:
        assert_close(got[2][name], want[2][name], tol, f"grad of {name}")


def check_matches_reference(fn, case: Case, seed: int = 0, **features: bool) -> None:
    """A scan backend `fn` agrees with the reference on the case (with `features` changed): outputs, state, gradients."""
    case = replace(case, **features)
    ins = case.inputs(seed)
    assert_matches(run(fn, case, ins), reference(case, ins))


def check_half_inputs(fn, case: Case) -> None:
    """Half-precision inputs: output in that dtype, fp32 state equal to the fp32 reference on the same values, each
    gradient in its input's dtype."""
    ins = case.inputs()
    out, last, grads = run(fn, case, ins)
    want = reference(case, ins)
    assert out.dtype == case.dtype and last.dtype == torch.float32
    # The state never passes through the half dtype: it agrees with the fp32 reference to fp32 accuracy.
    assert_close(last, want[1], 1e-5, "last state")
    assert_close(out, want[0], 1e-2, "output")  # only the final cast rounds
    for name, g in grads.items():
        assert g.dtype == ins[name].dtype, name
        assert_close(g, want[2][name], 2e-2, f"grad of {name}")
