"""Our Mamba block against the official mamba_ssm block on the CPU reference route (DESIGN.md)."""

import importlib.util
import sys
import types

import pytest
import torch

from seqmix.archs import Mamba


@pytest.fixture(scope="module")
def official():
    """mamba_ssm's Mamba class, with CUDA-only pieces swapped for its own pure-PyTorch references."""
    if importlib.util.find_spec("mamba_ssm") is None:
        pytest.skip("mamba-ssm not installed (pip install seqmix[cuda]; .ci/run installs it)")
    sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    import mamba_ssm.modules.mamba_simple as simple
    from mamba_ssm.ops.selective_scan_interface import selective_scan_ref

    patches = {"selective_scan_fn": selective_scan_ref, "causal_conv1d_fn": None, "causal_conv1d_update": None,
               "selective_state_update": None}
    saved = {name: getattr(simple, name) for name in patches}
    for name, value in patches.items():
        setattr(simple, name, value)
    yield simple.Mamba
    for name, value in saved.items():
        setattr(simple, name, value)


def twin(official_cls, d_model: int, **kwargs) -> tuple[Mamba, torch.nn.Module]:
    ours = Mamba(d_model, **kwargs)
    theirs = official_cls(d_model, use_fast_path=False, **kwargs)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize(
    "d_model, kwargs, length",
    [(32, {}, 17), (48, {"d_state": 8, "d_conv": 3, "expand": 1}, 40), (64, {"dt_rank": 5, "bias": True}, 9)],
)
def test_forward_matches_official(official, d_model, kwargs, length):
    torch.manual_seed(0)
    ours, theirs = twin(official, d_model, **kwargs)
    x = torch.randn(2, length, d_model)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)


def test_init_matches_official_distribution(official):
    torch.manual_seed(0)
    ours = Mamba(64)
    torch.manual_seed(0)
    theirs = official(64, use_fast_path=False)
    for name in ("A_log", "D"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name))
    assert ours.dt_rank == theirs.dt_rank and ours.d_inner == theirs.d_inner
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


def test_decode_step_matches_official(official):
    torch.manual_seed(1)
    ours, theirs = twin(official, 32)
    x = torch.randn(2, 12, 32)
    conv_state = torch.zeros(2, theirs.d_inner, theirs.d_conv)
    ssm_state = torch.zeros(2, theirs.d_inner, theirs.d_state)
    state = ours.init_state(2)
    for t in range(12):
        want, conv_state, ssm_state = theirs.step(x[:, t : t + 1], conv_state, ssm_state)
        got, state = ours.step(x[:, t], state)
        torch.testing.assert_close(got, want[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state["ssm"], ssm_state, rtol=1e-5, atol=1e-6)
