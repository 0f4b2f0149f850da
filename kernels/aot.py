"""Ahead-of-time compile every Triton kernel for sm_80 / sm_90 on a machine without a GPU and report its resources.

python -m seqmix.kernels.aot [--d-state 16 64] [--targets 80 90] [--json PATH]

Each Triton module in `TRITON_MODULES` exposes `aot_launches(d_state) -> list[KernelLaunch]`: the kernels it
launches, with the block sizes and warps its dispatch really picks for a Mamba-sized problem. Every launch is
compiled with `triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`; the bundled cuobjdump reads the
cubin's registers, stack (register spills land there), local and shared memory, and the occupancy per SM follows.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

# The one registry: a module added here (it must define `aot_launches`) is compiled by this command and its test.
TRITON_MODULES: tuple[str, ...] = ("scan_triton",)

TARGETS = (80, 90)
D_STATES = (16, 64)

# Per-SM limits (CUDA occupancy calculator): registers, warps, resident blocks, shared memory, per-block reservation.
SM_LIMITS = {
    80: dict(regs=65536, warps=64, blocks=32, smem=167936, smem_reserved=1024),  # A100
    86: dict(regs=65536, warps=48, blocks=16, smem=102400, smem_reserved=1024),  # RTX 30xx / A10
    89: dict(regs=65536, warps=48, blocks=24, smem=102400, smem_reserved=1024),  # L4 / RTX 40xx
    90: dict(regs=65536, warps=64, blocks=32, smem=233472, smem_reserved=1024),  # H100 / H200
}


@dataclass(frozen=True)
class KernelLaunch:
    """One kernel as a dispatch launches it: pointer dtypes and representative int arguments, constexprs, warps."""

    label: str
    kernel: object  # a triton.runtime.jit.JITFunction
    args: dict[str, str | int]  # every runtime argument: "*fp32"-style pointer type, or an int the launch passes
    constexprs: dict[str, object]
    num_warps: int = 4
    num_stages: int = 3


@dataclass
class Resources:
    """What one compiled kernel needs per thread and block on one target, and the occupancy that follows."""

    module: str
    kernel: str
    label: str
    target: int
    num_warps: int
    meta: dict = field(default_factory=dict)
    regs: int = 0
    stack: int = 0
    local: int = 0
    smem: int = 0
    blocks_per_sm: int = 0
    occupancy: float = 0.0


def occupancy(target: int, regs: int, smem: int, num_warps: int) -> tuple[int, float]:
    """Resident blocks per SM and the fraction of the SM's warp slots they fill."""
    if target not in SM_LIMITS:
        raise ValueError(f"no SM limits for sm_{target}; known: {', '.join(f'sm_{t}' for t in SM_LIMITS)}")
    lim = SM_LIMITS[target]
    regs_per_warp = -(-max(regs, 1) * 32 // 256) * 256  # allocated per warp in units of 256
    by_regs = (lim["regs"] // regs_per_warp) // num_warps
    by_warps = lim["warps"] // num_warps
    by_smem = lim["smem"] // (smem + lim["smem_reserved"])
    blocks = min(by_regs, by_warps, by_smem, lim["blocks"])
    return blocks, blocks * num_warps / lim["warps"]


def _source(launch: KernelLaunch):
    """An ASTSource specialised the way Triton's JIT specialises a real launch (ints == 1 constant, % 16 aligned)."""
    from triton.compiler import ASTSource

    names = launch.kernel.arg_names
    missing = [n for n in names if n not in launch.args and n not in launch.constexprs]
    if missing:
        raise ValueError(f"{launch.label}: arguments {missing} of {launch.kernel.__name__} are neither args nor constexprs")
    signature, constexprs, attrs = {}, dict(launch.constexprs), {}
    for i, name in enumerate(names):
        if name in launch.constexprs:
            signature[name] = "constexpr"
            continue
        value = launch.args[name]
        if isinstance(value, str):  # a pointer: torch allocations are 16-byte aligned
            signature[name] = value
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif value == 1:
            signature[name] = "constexpr"
            constexprs[name] = 1
        else:
            signature[name] = "i32"
            if value % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return ASTSource(fn=launch.kernel, signature=signature, constexprs=constexprs, attrs=attrs)


def _cuobjdump() -> str:
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(path):
        raise RuntimeError(f"the triton wheel has no bundled cuobjdump at {path}")
    return path


def resource_usage(cubin: bytes) -> dict[str, int]:
    """REG, STACK, SHARED and LOCAL of the (single) function in `cubin`, read with the bundled cuobjdump."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([_cuobjdump(), "--dump-resource-usage", f.name], capture_output=True, text=True, check=True)
    line = next((ln for ln in out.stdout.splitlines() if "REG:" in ln), None)
    if line is None:
        raise RuntimeError(f"cuobjdump printed no resource line:\n{out.stdout}")
    fields = dict(re.findall(r"(\w+):(\d+)", line))
    return {key.lower(): int(fields.get(key, 0)) for key in ("REG", "STACK", "SHARED", "LOCAL")}


def compile_launch(module: str, launch: KernelLaunch, target: int) -> Resources:
    """Compile `launch` for sm_`target` and measure what it needs."""
    import triton
    from triton.backends.compiler import GPUTarget

    options = dict(num_warps=launch.num_warps, num_stages=launch.num_stages)
    compiled = triton.compile(_source(launch), target=GPUTarget("cuda", target, 32), options=options)
    use = resource_usage(compiled.asm["cubin"])
    smem = int(compiled.metadata.shared) + use["shared"]  # dynamic (Triton's) + static
    blocks, occ = occupancy(target, use["reg"], smem, launch.num_warps)
    meta = {k: v for k, v in launch.constexprs.items() if k.startswith("BLOCK")}
    return Resources(
        module=module, kernel=launch.kernel.__name__, label=launch.label, target=target, num_warps=launch.num_warps,
        meta=meta, regs=use["reg"], stack=use["stack"], local=use["local"], smem=smem, blocks_per_sm=blocks,
        occupancy=occ,
    )  # fmt: skip


def launches(d_state: int, modules: Sequence[str] = TRITON_MODULES) -> list[tuple[str, KernelLaunch]]:
    """(module, launch) for every kernel of every registered Triton module at `d_state`."""
    if os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes"):
        raise RuntimeError("seqmix.kernels.aot compiles real kernels: unset TRITON_INTERPRET (it is set to 1)")
    found = []
    for name in modules:
        mod = importlib.import_module(f"{__package__}.{name}")
        found += [(name, launch) for launch in mod.aot_launches(d_state)]
    return found


def compile_all(d_states: Sequence[int] = D_STATES, targets: Sequence[int] = TARGETS) -> list[Resources]:
    """Compile every registered kernel at every d_state for every target."""
    return [compile_launch(m, launch, t) for d in d_states for m, launch in launches(d) for t in targets]


def format_table(rows: Sequence[Resources]) -> str:
    """A Markdown table: one row per kernel, launch and target."""
    head = "| kernel | launch | target | warps | blocks | regs/thread | stack B | local B | smem B | blocks/SM | occupancy |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        blocks = "×".join(str(v) for v in r.meta.values())
        lines.append(
            f"| {r.kernel} | {r.label} | sm_{r.target} | {r.num_warps} | {blocks} | {r.regs} | {r.stack} | {r.local} "
            f"| {r.smem} | {r.blocks_per_sm} | {r.occupancy:.0%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[Resources]:
    p = argparse.ArgumentParser(prog="python -m seqmix.kernels.aot", description=__doc__.splitlines()[0])
    p.add_argument("--d-state", type=int, nargs="+", default=list(D_STATES), help="SSM state sizes to compile for")
    p.add_argument("--targets", type=int, nargs="+", default=list(TARGETS), help="compute capabilities (80 = sm_80)")
    p.add_argument("--json", help="also write the rows as JSON to this file")
    args = p.parse_args(argv)
    for t in args.targets:
        if t not in SM_LIMITS:
            p.error(f"--targets {t}: no SM limits known; choose from {', '.join(map(str, SM_LIMITS))}")
    for d in args.d_state:
        if d < 1:
            p.error(f"--d-state {d}: must be a positive integer")
    rows = compile_all(args.d_state, args.targets)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
