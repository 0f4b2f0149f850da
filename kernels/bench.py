"""Selective-scan benchmark: forward and forward+backward time per backend and length, speedup over `ref`.

python -m seqmix.kernels.bench [--backends torch ref] [--batch 4] [--dim 512] [--d-state 16] [--lengths 256 1024 4096]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .dispatch import available_backends, selective_scan


@dataclass
class Row:
    backend: str
    length: int
    fwd_ms: float
    fwd_bwd_ms: float


def _inputs(batch: int, dim: int, d_state: int, length: int, device: str, dtype: torch.dtype) -> list[torch.Tensor]:
    """Mamba-like inputs: S4D-real A, dt bias so that softplus(dt) starts log-uniform in [1e-3, 1e-1]."""
    g = torch.Generator().manual_seed(0)
    dt0 = torch.exp(torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    tensors = [
        torch.randn(batch, dim, length, generator=g),  # u
        torch.randn(batch, dim, length, generator=g) * 0.1,  # delta before bias and softplus
        -torch.arange(1, d_state + 1, dtype=torch.float32).repeat(dim, 1),  # A
        torch.randn(batch, d_state, length, generator=g),  # B
        torch.randn(batch, d_state, length, generator=g),  # C
        torch.ones(dim),  # D
        torch.randn(batch, dim, length, generator=g),  # z
        dt0 + torch.log(-torch.expm1(-dt0)),  # delta_bias = softplus^-1(dt0)
    ]
    low = {0, 1, 3, 4, 6}  # activations take the benchmark dtype; parameters stay fp32 as in the Mamba block
    return [t.to(device=device, dtype=dtype if i in low else torch.float32).requires_grad_() for i, t in enumerate(tensors)]


def _median_ms(fn: Callable[[], None], repeats: int, warmup: int, sync: Callable[[], None]) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def measure(
    backend: str, batch: int, dim: int, d_state: int, length: int, repeats: int, warmup: int, device: str, dtype
) -> Row:
    """Median forward (autograd on) and forward+backward wall time of one backend at one length."""
    ins = _inputs(batch, dim, d_state, length, device, dtype)
    grad = torch.randn(batch, dim, length, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def fwd() -> torch.Tensor:
        return selective_scan(*ins, delta_softplus=True, backend=backend)

    def fwd_bwd() -> None:
        torch.autograd.backward(fwd(), grad)
        for t in ins:
            t.grad = None

    return Row(backend, length, _median_ms(fwd, repeats, warmup, sync), _median_ms(fwd_bwd, repeats, warmup, sync))


def _growth_pair(lengths: Sequence[int]) -> tuple[int, int] | None:
    """(L, 4L) with the largest 4L among the lengths, else the two longest lengths."""
    ls = sorted(set(lengths))
    quads = [(lo, lo * 4) for lo in ls if lo * 4 in ls]
    if quads:
        return quads[-1]
    return (ls[-2], ls[-1]) if len(ls) > 1 else None


def report(rows: list[Row], lengths: Sequence[int]) -> str:
    """The results table, speedups over ref at the same L, and time growth with L per backend."""
    ref = {r.length: r for r in rows if r.backend == "ref"}
    lines = [f"{'backend':<10}{'L':>6}{'fwd ms':>12}{'fwd+bwd ms':>13}{'fwd x ref':>11}{'fwd+bwd x ref':>15}"]
    for r in rows:
        base = ref.get(r.length)
        fx = f"{base.fwd_ms / r.fwd_ms:.1f}" if base else "-"
        bx = f"{base.fwd_bwd_ms / r.fwd_bwd_ms:.1f}" if base else "-"
        lines.append(f"{r.backend:<10}{r.length:>6}{r.fwd_ms:>12.1f}{r.fwd_bwd_ms:>13.1f}{fx:>11}{bx:>15}")
    pair = _growth_pair(lengths)
    if pair:
        lo, hi = pair
        lines.append("")
        lines.append(f"growth with L, t(L={hi}) / t(L={lo}) (linear scaling gives {hi / lo:.0f}):")
        for backend in dict.fromkeys(r.backend for r in rows):
            by_len = {r.length: r for r in rows if r.backend == backend}
            if lo in by_len and hi in by_len:
                a, b = by_len[lo], by_len[hi]
                lines.append(f"  {backend:<10} fwd {b.fwd_ms / a.fwd_ms:.2f}   fwd+bwd {b.fwd_bwd_ms / a.fwd_bwd_ms:.2f}")
            else:
                lines.append(f"  {backend:<10} not measured at both lengths")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Parse arguments, run the benchmark, print the table; returns the measured rows."""
    p = argparse.ArgumentParser(prog="python -m seqmix.kernels.bench", description=__doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", help="default: every backend that runs on --device (triton: CUDA only)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dim", type=int, default=512, help="channels D (Mamba's d_inner)")
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per cell; the median is reported")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--ref-max-length", type=int, default=256, help="ref is a Python loop over L: skip it above this length")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument(
        "--threads",
        type=int,
        help="torch.set_num_threads for CPU runs (default: torch's choice); on cores shared with other busy processes "
        "multi-threaded ops stall in OpenMP barriers, and 1 gives steadier numbers",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    backends = args.backends
    if backends is None:
        backends = [b for b in ("ref", "torch", "triton", "mamba_ssm") if b in available_backends(args.device)]
        if not args.device.startswith("cuda"):
            backends = [b for b in backends if b != "triton"]  # the CPU interpreter is for tests, not timing
    backends = sorted(dict.fromkeys(backends), key=lambda b: b != "ref")
    where = args.device
    if not args.device.startswith("cuda"):
        # Other processes on the same cores distort CPU timings (and multi-threaded ones most): say how busy.
        load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
        where += f" ({torch.get_num_threads()} threads of {os.cpu_count()} CPUs{load})"
    print(
        f"selective scan: B={args.batch} D={args.dim} N={args.d_state} {args.dtype} on {where}; "
        f"median of {args.repeats} after {args.warmup} warm-up; delta_softplus, D and z on"
    )
    skipped = [L for L in args.lengths if L > args.ref_max_length]
    if "ref" in backends and skipped:
        print(
            f"ref (sequential) skipped for L > {args.ref_max_length} ({', '.join(map(str, skipped))}); "
            f"'x ref' is a speedup over ref at the same L, so only at L <= {args.ref_max_length}"
        )
    rows = []
    for backend in backends:
        for length in args.lengths:
            if backend == "ref" and length > args.ref_max_length:
                continue
            rows.append(
                measure(backend, args.batch, args.dim, args.d_state, length, args.repeats, args.warmup, args.device, dtype)
            )
    print(report(rows, args.lengths))
    return rows


if __name__ == "__main__":
    main()
