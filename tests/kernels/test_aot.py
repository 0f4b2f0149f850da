"""`python -m seqmix.kernels.aot`: every Triton kernel compiles for sm_80 and sm_90 here, without a GPU, and spills
nothing at d_state <= 16; the occupancy arithmetic against hand-worked cases."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from seqmix.kernels import aot

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KERNELS = os.path.join(REPO, "kernels")


def _jit_kernels_in_source() -> dict[str, set[str]]:
    """Module -> names of the launched Triton kernels (`@triton.jit` functions named `*_kernel`) it defines."""
    found: dict[str, set[str]] = {}
    for name in sorted(os.listdir(KERNELS)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(KERNELS, name)) as f:
            text = f.read()
        kernels = set(re.findall(r"@triton\.jit[^\n]*\ndef (\w+_kernel)\(", text))
        if kernels:
            found[name[:-3]] = kernels
    return found


def test_every_triton_module_is_registered() -> None:
    defined = _jit_kernels_in_source()
    assert "scan_triton" in defined, defined
    unregistered = set(defined) - set(aot.TRITON_MODULES)
    assert not unregistered, f"add these modules to seqmix.kernels.aot.TRITON_MODULES: {sorted(unregistered)}"


@pytest.mark.slow  # compiles each kernel for 2 targets x 2 state sizes: ~15 s on 2 cores with a cold Triton cache
def test_every_kernel_compiles_for_sm80_and_sm90_without_spills_at_small_state(tmp_path) -> None:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (Linux only)")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # real compilation, not the interpreter
    env["TRITON_CACHE_DIR"] = str(tmp_path / "cache")  # compile for real, not from another run's cache
    out = tmp_path / "aot.json"
    cmd = [sys.executable, "-m", "seqmix.kernels.aot", "--d-state", "16", "64", "--targets", "80", "90", "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"AOT compile failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    rows = json.loads(out.read_text())
    expected = {(k, t, d) for kernels in _jit_kernels_in_source().values() for k in kernels for t in (80, 90) for d in (16, 64)}
    got = {(r["kernel"], r["target"], int(re.search(r"d_state (\d+)", r["label"]).group(1))) for r in rows}
    assert expected <= got, f"not compiled: {expected - got}"
    for r in rows:
        assert 0 < r["regs"] <= 255 and r["blocks_per_sm"] >= 1, r
        if "d_state 16" in r["label"]:
            assert r["stack"] == 0 and r["local"] == 0, f"{r['kernel']} spills at d_state 16 on sm_{r['target']}: {r}"
    table = proc.stdout
    assert table.splitlines()[0].startswith("| kernel | launch | target |")
    assert len([ln for ln in table.splitlines() if ln.startswith("| _")]) == len(rows)


@pytest.mark.parametrize(
    ("target", "regs", "smem", "warps", "blocks", "occ"),
    [
        (80, 255, 0, 4, 2, 8 / 64),  # 256 regs x 32 lanes = 8192 per warp: 8 warps fit the 64k register file
        (80, 168, 16384, 4, 3, 12 / 64),  # 168 -> 5376 per warp: 12 warps, 3 blocks
        (90, 32, 0, 4, 16, 1.0),  # warp slots are the limit: 64 / 4
        (80, 32, 80000, 4, 2, 8 / 64),  # shared memory: 163 kB / (80000 + 1024 reserved)
        (90, 16, 0, 1, 32, 0.5),  # the 32-blocks-per-SM cap
    ],
)
def test_occupancy(target: int, regs: int, smem: int, warps: int, blocks: int, occ: float) -> None:
    assert aot.occupancy(target, regs, smem, warps) == (blocks, pytest.approx(occ))


def test_occupancy_rejects_unknown_target() -> None:
    with pytest.raises(ValueError, match="sm_75"):
        aot.occupancy(75, 32, 0, 4)
