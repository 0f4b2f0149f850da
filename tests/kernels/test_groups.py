"""B / C groups: every channel reads its own group's B or C, with or without a length axis."""

from __future__ import annotations

import pytest
import torch

from seqmix.kernels.groups import as_grouped, groups_of, per_channel, ungrouped


@pytest.mark.parametrize("tail", [(), (7,)], ids=["step", "scan"])
@pytest.mark.parametrize("groups", [None, 1, 2, 6])
def test_each_channel_reads_its_group(tail, groups):
    batch, dim, n = 2, 6, 3
    M = torch.randn(batch, n, *tail) if groups is None else torch.randn(batch, groups, n, *tail)
    got = per_channel(M, dim, grouped=groups is not None)
    assert got.shape == (batch, dim, n, *tail)
    for c in range(dim):
        want = M if groups is None else M[:, c // (dim // groups)]  # channel c belongs to group c // (dim / G)
        assert torch.equal(got[:, c], want), c


def test_groups_of_and_as_grouped():
    B, C = torch.randn(2, 4, 5), torch.randn(2, 3, 4, 5)
    assert groups_of(B, B) == 1 and groups_of(C, C) == 3 and groups_of(B, C) == 3
    assert as_grouped(B, 3).shape == (2, 3, 4, 5) and torch.equal(as_grouped(B, 3)[:, 2], B)
    assert as_grouped(C, 3) is C


@pytest.mark.parametrize("grouped", [False, True])
def test_ungrouped_is_the_gradient_of_as_grouped(grouped: bool) -> None:
    M = torch.randn(2, 3, 4, 5) if grouped else torch.randn(2, 4, 5)
    M.requires_grad_()
    dM = torch.randn(2, 3, 4, 5)
    (want,) = torch.autograd.grad(as_grouped(M, 3), M, dM)
    assert torch.allclose(ungrouped(dM, M.detach()), want, rtol=0, atol=1e-6)
