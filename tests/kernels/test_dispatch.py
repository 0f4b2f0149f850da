"""Backend choice, clear errors for backends that cannot run, and early input validation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from seqmix import kernels
from seqmix.kernels import resolve_backend, selective_scan

from .cases import Case, assert_matches, reference, run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_public_names() -> None:
    assert {"selective_scan", "selective_scan_ref", "selective_state_update", "BACKENDS"} <= set(kernels.__all__)
    assert set(kernels.BACKENDS) == {"auto", "ref", "torch", "cpu", "triton", "mamba_ssm"}


def test_auto_on_cpu_is_the_fused_scan_when_it_builds() -> None:
    from seqmix.kernels import scan_cpu

    assert resolve_backend("auto", "cpu") == ("cpu" if scan_cpu.available() else "torch")
    assert "torch" in kernels.available_backends("cpu")


def test_auto_falls_back_to_torch_without_the_fused_scan(monkeypatch) -> None:
    from seqmix.kernels import scan_cpu

    monkeypatch.setattr(scan_cpu, "library", lambda: None)
    monkeypatch.setitem(scan_cpu._state, "why", "no C compiler (cc, gcc or $CC) on PATH")
    with pytest.warns(RuntimeWarning, match="using the PyTorch scan on CPU .backend 'cpu' is unavailable: no C compiler"):
        monkeypatch.setattr("seqmix.kernels.dispatch._warned_fallback", False)
        assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(RuntimeError, match="backend 'cpu' is unavailable: no C compiler"):
        resolve_backend("cpu", "cpu")
    assert "cpu" not in kernels.available_backends("cpu")


@pytest.mark.parametrize("backend", ["auto", "ref", "torch", "cpu"])
def test_cpu_backends_match_reference(backend: str) -> None:
    case = Case(length=19, groups=2)
    ins = case.inputs()
    fn = lambda x: selective_scan(*x, backend=backend)  # noqa: E731
    assert_matches(run(fn, case, ins), reference(case, ins))


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="unknown selective-scan backend 'cuda'"):
        selective_scan(*Case().inputs().values(), backend="cuda")


def test_triton_on_cpu_without_interpreter(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="backend 'triton' needs CUDA tensors or TRITON_INTERPRET=1; got device cpu"):
        selective_scan(*Case().inputs().values(), backend="triton")


def test_triton_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "triton", None)
    with pytest.raises(RuntimeError, match="backend 'triton' needs the triton package"):
        resolve_backend("triton", "cpu")


def test_mamba_ssm_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)
    with pytest.raises(RuntimeError, match=r"needs the mamba-ssm package: pip install seqmix\[cuda\]"):
        resolve_backend("mamba_ssm", "cpu")


def test_mamba_ssm_needs_cuda() -> None:
    if "mamba_ssm" not in sys.modules and __import__("importlib").util.find_spec("mamba_ssm") is None:
        pytest.skip("mamba-ssm is not installed (CI installs it; see .ci/run)")
    with pytest.raises(RuntimeError, match="backend 'mamba_ssm' needs CUDA tensors; got device cpu"):
        selective_scan(*Case().inputs().values(), backend="mamba_ssm")


def test_import_without_triton() -> None:
    """`import kernels` and the CPU backends work where triton cannot be imported (e.g. macOS)."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None
        import torch, kernels
        u = torch.randn(1, 2, 5)
        y = kernels.selective_scan(u, u.abs(), -torch.ones(2, 3), torch.randn(1, 3, 5), torch.randn(1, 3, 5))
        assert y.shape == (1, 2, 5)
        try:
            kernels.selective_scan(u, u.abs(), -torch.ones(2, 3), torch.randn(1, 3, 5), torch.randn(1, 3, 5), backend="triton")
        except RuntimeError as err:
            assert "needs the triton package" in str(err), err
        else:
            raise AssertionError("no error")
        assert "seqmix.kernels.scan_triton" not in sys.modules
        """
    )
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr


BAD = {
    "delta": (lambda i: {**i, "delta": i["delta"][..., :-1]}, r"delta must have shape \(batch, dim, seqlen\) = \(2, 6, 37\)"),
    "A-state": (lambda i: {**i, "A": i["A"][:, :2]}, r"B must have shape \(batch, d_state, seqlen\) = \(2, 2, 37\)"),
    "A-dim": (lambda i: {**i, "A": i["A"][:5]}, r"A must have shape \(dim, d_state\) = \(6, N\)"),
    "B": (lambda i: {**i, "B": i["B"][:, :3]}, r"B must have shape \(batch, d_state, seqlen\) = \(2, 4, 37\)"),
    "C-length": (lambda i: {**i, "C": i["C"][..., :9]}, r"C must have shape \(batch, d_state, seqlen\) = \(2, 4, 37\)"),
    "B-groups": (lambda i: {**i, "B": torch.zeros(2, 4, 4, 37)}, r"B must have shape \(batch, groups, d_state, seqlen\)"),
    "D": (lambda i: {**i, "D": torch.zeros(5)}, r"D must have shape \(dim,\) = \(6,\)"),
    "z": (lambda i: {**i, "z": torch.zeros(2, 6, 36)}, r"z must have shape \(batch, dim, seqlen\) = \(2, 6, 37\)"),
    "delta_bias": (lambda i: {**i, "delta_bias": torch.zeros(6, 1)}, r"delta_bias must have shape \(dim,\)"),
    "u": (lambda i: {**i, "u": i["u"][0]}, r"u must have shape \(batch, dim, seqlen\)"),
}


@pytest.mark.parametrize("backend", ["ref", "torch", "cpu"])
@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_validation_names_the_tensor(bad, backend: str) -> None:
    change, message = bad
    ins = change(Case().inputs())
    with pytest.raises(ValueError, match=message):
        selective_scan(*ins.values(), backend=backend)
