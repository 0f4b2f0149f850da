"""The single-step decode update against the scan it must continue."""

from __future__ import annotations

import pytest
import torch

from seqmix.kernels import selective_scan, selective_state_update

from .cases import Case, assert_close


@pytest.mark.parametrize("backend", ["ref", "torch"])
@pytest.mark.parametrize("groups", [None, 2])
def test_steps_reproduce_scan(backend: str, groups: int | None) -> None:
    """Prefill with the scan, then step token by token: same outputs and state as one scan over everything."""
    case = Case(length=12, groups=groups)
    ins = case.inputs()
    u, delta, A, B, C, D, z, bias = ins.values()
    full, full_last = selective_scan(u, delta, A, B, C, D, z, bias, True, True, backend=backend)
    cut = 7
    pre = [t[..., :cut] if t is not None and t.dim() >= 3 else t for t in ins.values()]
    y_pre, state = selective_scan(*pre, delta_softplus=True, return_last_state=True, backend=backend)
    steps = []
    for t in range(cut, case.length):
        steps.append(selective_state_update(state, u[..., t], delta[..., t], A, B[..., t], C[..., t], D, z[..., t], bias, True))
    assert_close(torch.cat([y_pre, torch.stack(steps, -1)], -1), full, 1e-5, "outputs")
    assert_close(state, full_last, 1e-5, "state")


def test_rejects_bad_shapes() -> None:
    state = torch.zeros(2, 4, 3)
    u = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"B must have shape \(batch, d_state\)"):
        selective_state_update(state, u, u, torch.zeros(4, 3), torch.zeros(2, 5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"A must have shape \(dim, d_state\)"):
        selective_state_update(state, u, u, torch.zeros(4, 2), torch.zeros(2, 3), torch.zeros(2, 3))
