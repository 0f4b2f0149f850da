"""Mamba's selectivity ablation (`selective=False`): Δ, B and C are parameters, so the SSM is linear time-invariant."""

import pytest
import torch

from seqmix import kernels
from seqmix.archs import Mamba


def scan_impulse_responses(mixer: Mamba, x: torch.Tensor, positions: list[int], span: int) -> list[torch.Tensor]:
    """The SSM's response (B, di, span) to a unit impulse in every channel at each position, with Δ, B, C from x."""
    delta, A, B, C = mixer._ssm_inputs(x)
    responses = []
    for t in positions:
        u = torch.zeros_like(delta)
        u[..., t] = 1.0
        y = kernels.selective_scan(u, delta, A, B, C, None, delta_bias=mixer.delta_bias.float(), delta_softplus=True,
                                   backend="ref")
        responses.append(y[..., t:t + span])
    return responses


@pytest.mark.parametrize("d_model,d_state,length", [(4, 2, 12), (6, 3, 17)])
def test_lti_ssm_has_one_impulse_response_whatever_the_input(d_model, d_state, length):
    torch.manual_seed(0)
    mixer = Mamba(d_model, d_state=d_state, selective=False)
    x1, x2 = torch.randn(2, mixer.d_inner, length), 3 * torch.randn(2, mixer.d_inner, length)
    first, later = scan_impulse_responses(mixer, x1, [0, length // 2], span=length - length // 2)
    other_input = scan_impulse_responses(mixer, x2, [length // 2], span=length - length // 2)[0]
    torch.testing.assert_close(first, later)  # time-invariant: the same response at every position
    torch.testing.assert_close(later, other_input)  # and input-independent
    assert first.abs().amax() > 1e-3


def test_the_selective_ssm_is_not_time_invariant():
    """The check above fails for the selective SSM, so it tells the two apart."""
    torch.manual_seed(0)
    mixer = Mamba(4, d_state=2)
    x = torch.randn(2, mixer.d_inner, 12)
    first, later = scan_impulse_responses(mixer, x, [0, 6], span=6)
    assert not torch.allclose(first, later, atol=1e-4)


def test_lti_mamba_drops_the_input_projections_of_delta_b_c():
    selective, lti = Mamba(16, d_state=4), Mamba(16, d_state=4, selective=False)
    names = {n for n, _ in lti.named_parameters()}
    assert {"B_lti", "C_lti", "dt_bias"} <= names and not any(n.startswith(("x_proj", "dt_proj")) for n in names)
    di, n, r = lti.d_inner, 4, lti.dt_rank
    assert selective.param_count() - lti.param_count() == di * (r + 2 * n) + r * di - 2 * di * n
    assert lti.param_count() == sum(p.numel() for p in lti.parameters())
    assert lti.flops_per_token(64) < selective.flops_per_token(64)


def test_selective_must_be_a_bool():
    with pytest.raises(ValueError, match="selective must be True or False, got 'no'"):
        Mamba(8, selective="no")


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_lti_mamba_agrees_across_scan_backends(backend):
    """B and C of one group per channel take the grouped path of every CPU scan backend."""
    x = torch.randn(2, 9, 8, generator=torch.Generator().manual_seed(0))
    outs = []
    for name in ("ref", backend):
        torch.manual_seed(1)
        outs.append(Mamba(8, d_state=4, selective=False, scan_backend=name)(x))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-6, rtol=1e-5)
