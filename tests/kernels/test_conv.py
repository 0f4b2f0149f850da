"""Mamba's causal conv: the PyTorch path against causal-conv1d's own references, the dispatch, and the package route
(on CPU: the dispatch pointed at the package's `causal_conv1d_ref` / `causal_conv1d_update_ref`, which take the
CUDA functions' arguments) through the whole Mamba block, decode included."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seqmix import kernels
from seqmix.archs import Mamba
from seqmix.kernels import conv

needs_package = pytest.mark.skipif(
    importlib.util.find_spec("causal_conv1d") is None, reason="causal-conv1d not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def refs():
    """causal-conv1d's pure-PyTorch references, importable on CPU once its CUDA extension is stubbed."""
    sys.modules.setdefault("causal_conv1d_cuda", types.ModuleType("causal_conv1d_cuda"))
    from causal_conv1d.causal_conv1d_interface import causal_conv1d_ref, causal_conv1d_update_ref

    return causal_conv1d_ref, causal_conv1d_update_ref


@pytest.fixture
def package_route(monkeypatch, refs):
    """The dispatch's causal_conv1d backend on CPU, running the package's references; counts the calls."""
    calls = {"fn": 0, "update": 0}
    fn_ref, update_ref = refs

    def fn(*args, **kwargs):
        calls["fn"] += 1
        return fn_ref(*args, **kwargs)

    def update(*args, **kwargs):
        calls["update"] += 1
        return update_ref(*args, **kwargs)

    monkeypatch.setattr(conv, "_package_fns", lambda device: (fn, update))
    return calls


def _inputs(batch: int, dim: int, length: int, width: int, bias: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, length, generator=g)
    w = torch.randn(dim, width, generator=g)
    b = torch.randn(dim, generator=g) if bias else None
    return x, w, b


@needs_package
@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    dim=st.integers(1, 6),
    length=st.integers(1, 12),
    width=st.integers(1, 5),
    bias=st.booleans(),
    activation=st.sampled_from([None, "silu"]),
    seed=st.integers(0, 2**16),
)
def test_torch_path_matches_package_reference(refs, batch, dim, length, width, bias, activation, seed) -> None:
    x, w, b = _inputs(batch, dim, length, width, bias, seed)
    fn_ref, update_ref = refs
    ours = kernels.causal_conv1d(x, w, b, activation, backend="torch")
    torch.testing.assert_close(ours, fn_ref(x, w, b, activation=activation))
    if width > 1:
        state = torch.randn(batch, dim, width - 1, generator=torch.Generator().manual_seed(seed + 1))
        out, new_state = kernels.causal_conv1d_step(x[..., 0], state, w, b, activation, backend="torch")
        theirs_state = state.clone()
        theirs = update_ref(x[..., 0], theirs_state, w, b, activation=activation)
        torch.testing.assert_close(out, theirs)
        torch.testing.assert_close(new_state, theirs_state)


def test_step_by_step_equals_sequence() -> None:
    x, w, b = _inputs(2, 3, 9, 4, True)
    full = kernels.causal_conv1d(x, w, b, "silu")
    state = torch.zeros(2, 3, 3)
    for t in range(9):
        out, state = kernels.causal_conv1d_step(x[..., t], state, w, b, "silu")
        torch.testing.assert_close(out, full[..., t])
    torch.testing.assert_close(state, x[..., -3:])


def test_auto_is_torch_on_cpu() -> None:
    assert kernels.resolve_conv_backend("auto", "cpu") == "torch"
    assert set(kernels.CONV_BACKENDS) == {"auto", "torch", "causal_conv1d"}


@needs_package
def test_package_backend_needs_cuda() -> None:
    with pytest.raises(RuntimeError, match="conv backend 'causal_conv1d' needs CUDA tensors; got device cpu"):
        kernels.causal_conv1d(*_inputs(1, 2, 3, 4, True), backend="causal_conv1d")


def test_package_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "causal_conv1d", None)
    with pytest.raises(RuntimeError, match=r"needs the causal-conv1d package: pip install seqmix\[cuda\]"):
        kernels.resolve_conv_backend("causal_conv1d", "cpu")
    assert kernels.resolve_conv_backend("auto", "cpu") == "torch"


BAD = {
    "backend": (dict(backend="cudnn"), r"unknown conv backend 'cudnn'; choose one of auto, torch, causal_conv1d"),
    "activation": (dict(activation="gelu"), r"unknown activation 'gelu'; choose None or 'silu'"),
    "weight": (dict(weight=torch.zeros(3, 4)), r"weight must have shape \(dim, width\) = \(2, W\); got \(3, 4\)"),
    "bias": (dict(bias=torch.zeros(3)), r"bias must have shape \(dim,\) = \(2,\); got \(3,\)"),
    "x": (dict(x=torch.zeros(2, 5)), r"x must have shape \(batch, dim, seqlen\); got \(2, 5\)"),
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_bad_input(bad) -> None:
    change, message = bad
    x, w, b = _inputs(1, 2, 5, 4, True)
    args = dict(x=x, weight=w, bias=b, activation="silu", backend="torch") | change
    with pytest.raises(ValueError, match=message):
        kernels.causal_conv1d(**args)


def test_step_bad_state() -> None:
    x, w, b = _inputs(1, 2, 1, 4, True)
    with pytest.raises(ValueError, match=r"conv_state must have shape \(1, 2, 3\); got \(1, 2, 4\)"):
        kernels.causal_conv1d_step(x[..., 0], torch.zeros(1, 2, 4), w, b)


def test_mamba_rejects_unknown_conv_backend() -> None:
    with pytest.raises(ValueError, match="mamba: unknown conv_backend 'cuda'; choose one of auto, torch, causal_conv1d"):
        Mamba(8, conv_backend="cuda")


@needs_package
@pytest.mark.parametrize(("d_conv", "length"), [(4, 11), (2, 5), (1, 3)])
def test_mamba_through_package_route(package_route, d_conv: int, length: int) -> None:
    """Forward, gradients and prefill + step decode through causal_conv1d_fn / causal_conv1d_update's signatures."""
    torch.manual_seed(0)
    plain = Mamba(8, d_state=4, d_conv=d_conv, conv_backend="torch", scan_backend="torch")
    routed = Mamba(8, d_state=4, d_conv=d_conv, conv_backend="causal_conv1d", scan_backend="torch")
    routed.load_state_dict(plain.state_dict())
    x = torch.randn(2, length, 8)
    want, got = plain(x), routed(x)
    assert package_route["fn"] == 1
    torch.testing.assert_close(got, want)
    want.square().sum().backward()
    got.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), routed.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)

    with torch.no_grad():
        split = length // 2
        y0, state = routed.prefill(x[:, :split])
        outs = [y0]
        for t in range(split, length):
            before = state["conv"].clone()
            held = state["conv"]
            y, state = routed.step(x[:, t], state)
            torch.testing.assert_close(held, before)  # the caller's window is not updated in place
            outs.append(y[:, None])
        torch.testing.assert_close(torch.cat(outs, dim=1), want.detach(), rtol=1e-4, atol=1e-5)
    assert package_route["update"] == length - split
