"""Kernel benchmark: the selective scan per backend and length (speedup over `ref`), and the linear recurrences
(gated linear attention, delta rule): chunked form against its sequential reference and time growth with L.

python -m seqmix.kernels.bench [--kernels selective_scan gated_linear_attention delta_rule]
    [--backends torch ref] [--batch 4] [--dim 512] [--d-state 16] [--lengths 256 1024 4096]
    [--heads 4] [--head-dim 32] [--rec-batch 1] [--rec-lengths 1024 2048 4096 8192 16384] [--speedup-length 1024]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from .delta_rule import delta_rule, delta_rule_reference
from .dispatch import available_backends, selective_scan
from .gated_linear_attention import gated_linear_attention, gla_reference
from .timing import median_ms

KERNELS = ("selective_scan", "gated_linear_attention", "delta_rule")
# each recurrence with each kind of decay it takes: none, one per (head, step), one per (head, step, key channel)
RECURRENCES = {
    "gated_linear_attention": (None, "head", "channel"),
    "delta_rule": (None, "head"),
}
# each form of a recurrence: (gated linear attention, delta rule); `chunked` is our torch form, `fla` needs CUDA
RECURRENCE_FORMS = {
    "reference": (gla_reference, delta_rule_reference),
    "chunked": (partial(gated_linear_attention, backend="torch"), partial(delta_rule, backend="torch")),
    "fla": (partial(gated_linear_attention, backend="fla"), partial(delta_rule, backend="fla")),
}


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


def measure(
    backend: str, batch: int, dim: int, d_state: int, length: int, repeats: int, warmup: int, device: str, dtype
) -> Row:
    """Median forward (autograd on) and forward+backward wall time of one backend at one length."""
    ins = _inputs(batch, dim, d_state, length, device, dtype)
    grad = torch.randn(batch, dim, length, device=device, dtype=dtype)

    def fwd() -> torch.Tensor:
        return selective_scan(*ins, delta_softplus=True, backend=backend)

    def fwd_bwd() -> None:
        torch.autograd.backward(fwd(), grad)
        for t in ins:
            t.grad = None

    return Row(backend, length, median_ms(fwd, device, repeats, warmup), median_ms(fwd_bwd, device, repeats, warmup))


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


@dataclass
class RecurrenceRow:
    kernel: str  # e.g. "gated_linear_attention[channel]"
    form: str  # a key of RECURRENCE_FORMS
    length: int
    fwd_ms: float
    fwd_bwd_ms: float


def _recurrence_inputs(
    kernel: str, decay: str | None, batch: int, heads: int, head_dim: int, length: int, device: str,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor | None]:
    """Layer-like inputs: unit-norm keys for the delta rule, GLA-like decays (logsigmoid / 16), beta = sigmoid; q, k,
    v in `dtype`, decays and beta in fp32 (as the mixers give them)."""
    g = torch.Generator().manual_seed(0)
    shape = (batch, heads, length, head_dim)
    q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
    if kernel == "delta_rule":
        k = torch.nn.functional.normalize(k, dim=-1)
    decay_shape = {None: None, "head": shape[:3], "channel": shape}[decay]
    log_decay = None if decay_shape is None else torch.nn.functional.logsigmoid(torch.randn(decay_shape, generator=g)) / 16
    beta = torch.rand(shape[:3], generator=g) if kernel == "delta_rule" else None
    ins = {"q": q.to(dtype), "k": k.to(dtype), "v": v.to(dtype), "beta": beta, "log_decay": log_decay}
    return {n: None if t is None else t.to(device).requires_grad_() for n, t in ins.items()}


def recurrence_call(kernel: str, form: str, ins: dict[str, torch.Tensor | None]) -> Callable[[], tuple]:
    """The zero-argument call of one form of `kernel` on `ins`, returning (o, final state)."""
    fn = RECURRENCE_FORMS[form][kernel == "delta_rule"]
    beta = (ins["beta"],) if kernel == "delta_rule" else ()
    return lambda: fn(ins["q"], ins["k"], ins["v"], *beta, ins["log_decay"])


def measure_recurrence(
    kernel: str, decay: str | None, form: str, batch: int, heads: int, head_dim: int, length: int,
    repeats: int, warmup: int, device: str, dtype: torch.dtype = torch.float32,
) -> RecurrenceRow:
    """Median forward (autograd on) and forward+backward wall time of one recurrence form at one length."""
    ins = _recurrence_inputs(kernel, decay, batch, heads, head_dim, length, device, dtype)
    fn = recurrence_call(kernel, form, ins)

    def fwd_bwd() -> None:
        o, s = fn()
        (o.sum() + s.sum()).backward()
        for t in ins.values():
            if t is not None:
                t.grad = None

    label = f"{kernel}[{decay or 'none'}]"
    fwd_ms, fwd_bwd_ms = median_ms(fn, device, repeats, warmup), median_ms(fwd_bwd, device, repeats, warmup)
    return RecurrenceRow(label, form, length, fwd_ms, fwd_bwd_ms)


def fit_exponent(lengths: Sequence[float], times: Sequence[float]) -> float:
    """Least-squares slope of log(time) against log(L): time ~ L^exponent."""
    xs, ys = [math.log(x) for x in lengths], [math.log(t) for t in times]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def report_recurrences(rows: list[RecurrenceRow], speedup_length: int) -> str:
    """Per recurrence: chunked vs reference at speedup_length, chunked times per L, the fitted fwd+bwd exponent."""
    lines = [
        f"{'kernel':<32}{'form':<11}{'L':>7}{'fwd ms':>11}{'fwd+bwd ms':>13}",
        *(f"{r.kernel:<32}{r.form:<11}{r.length:>7}{r.fwd_ms:>11.1f}{r.fwd_bwd_ms:>13.1f}" for r in rows),
        "",
        f"{'kernel':<32}{f'fwd x ref (L={speedup_length})':>22}{'fwd+bwd x ref':>15}{'lengths':>18}{'fwd+bwd exponent':>18}",
    ]
    for kernel in dict.fromkeys(r.kernel for r in rows):
        chunked = sorted((r for r in rows if r.kernel == kernel and r.form == "chunked"), key=lambda r: r.length)
        ref = next((r for r in rows if r.kernel == kernel and r.form == "reference" and r.length == speedup_length), None)
        fast = next((r for r in chunked if r.length == speedup_length), None)
        fx, bx = (f"{ref.fwd_ms / fast.fwd_ms:.1f}", f"{ref.fwd_bwd_ms / fast.fwd_bwd_ms:.1f}") if ref and fast else ("-", "-")
        if len(chunked) > 1:
            span = f"{chunked[0].length}-{chunked[-1].length}"
            exponent = f"{fit_exponent([r.length for r in chunked], [r.fwd_bwd_ms for r in chunked]):.2f}"
        else:
            span, exponent = "-", "-"
        lines.append(f"{kernel:<32}{fx:>22}{bx:>15}{span:>18}{exponent:>18}")
    return "\n".join(lines)


def _where(device: str) -> str:
    if device.startswith("cuda"):
        return device
    # Other processes on the same cores distort CPU timings (and multi-threaded ones most): say how busy.
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{device} ({torch.get_num_threads()} threads of {os.cpu_count()} CPUs{load})"


def run_recurrences(args: argparse.Namespace) -> list[RecurrenceRow]:
    """Benchmark each requested recurrence and decay kind; print the table."""
    lengths = sorted(set(args.rec_lengths) | {args.speedup_length})
    print(
        f"\nlinear recurrences: B={args.rec_batch} H={args.heads} dk=dv={args.head_dim} float32 on {_where(args.device)}; "
        f"median of {args.repeats} after {args.warmup} warm-up; the sequential reference only at L={args.speedup_length}"
    )
    rows = []
    for kernel in (k for k in args.kernels if k in RECURRENCES):
        for decay in RECURRENCES[kernel]:
            common = (args.rec_batch, args.heads, args.head_dim)
            rows.append(measure_recurrence(
                kernel, decay, "reference", *common, args.speedup_length, args.repeats, args.warmup, args.device
            ))
            for length in lengths:
                rows.append(measure_recurrence(
                    kernel, decay, "chunked", *common, length, args.repeats, args.warmup, args.device
                ))
    print(report_recurrences(rows, args.speedup_length))
    return rows


def main(argv: Sequence[str] | None = None) -> list[Row | RecurrenceRow]:
    """Parse arguments, run the benchmarks, print the tables; returns the measured rows."""
    p = argparse.ArgumentParser(prog="python -m seqmix.kernels.bench", description=__doc__.splitlines()[0])
    p.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    p.add_argument("--backends", nargs="+", help="default: every backend that runs on --device (triton: CUDA only)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dim", type=int, default=512, help="channels D (Mamba's d_inner)")
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096], help="selective-scan lengths")
    p.add_argument("--heads", type=int, default=4, help="recurrences: heads H")
    p.add_argument("--head-dim", type=int, default=32, help="recurrences: dk = dv per head")
    p.add_argument("--rec-batch", type=int, default=1, help="recurrences: batch")
    p.add_argument("--rec-lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384],
                   help="recurrences: lengths of the chunked form, over which the time exponent is fitted")
    p.add_argument("--speedup-length", type=int, default=1024, help="recurrences: L of the chunked-vs-reference speedup")
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
    for name in ("batch", "dim", "d_state", "heads", "head_dim", "rec_batch", "speedup_length", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[Row | RecurrenceRow] = []
    if "selective_scan" in args.kernels:
        rows += run_scan(args)
    if any(k in RECURRENCES for k in args.kernels):
        rows += run_recurrences(args)
    return rows


def run_scan(args: argparse.Namespace) -> list[Row]:
    """The selective-scan benchmark over backends and lengths; print the table."""
    dtype = getattr(torch, args.dtype)
    backends = args.backends
    if backends is None:
        backends = [b for b in ("ref", "torch", "triton", "mamba_ssm") if b in available_backends(args.device)]
        if not args.device.startswith("cuda"):
            backends = [b for b in backends if b != "triton"]  # the CPU interpreter is for tests, not timing
    backends = sorted(dict.fromkeys(backends), key=lambda b: b != "ref")
    print(
        f"selective scan: B={args.batch} D={args.dim} N={args.d_state} {args.dtype} on {_where(args.device)}; "
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
