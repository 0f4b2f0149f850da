"""One command for a GPU machine: scan backends against each other, scan and attention timings, decode speed.

python -m seqmix.kernels.gpu_check --out DIR [--time-budget 300]     # on a CUDA GPU, about 5 minutes
python -m seqmix.kernels.gpu_check --out DIR --dry-run               # the same code at tiny shapes, on CPU

Sections, in order, each written to DIR/gpu_check.json and DIR/gpu_check.md as soon as it is done:
  parity     every scan backend that runs here (triton, mamba_ssm, torch; ref in a dry run) against each other at
             Mamba-130M's layer shape (d_inner 1536, d_state 16, L 2048, fp32): outputs and all eight gradients
  scan       forward and forward+backward ms per backend, L = 512 ... 65536 at a fixed 64k tokens per batch (bf16)
  recurrence_parity, recurrences
             gated linear attention (no, per-head, per-channel decay) and the delta rule (no, per-head decay): fla's
             kernels (where fla-core runs) against our torch form (and the sequential reference in a dry run) at
             B 2, H 8, L 2048, dk = dv = 64, fp32, outputs, final states and all gradients; then fwd and fwd+bwd ms
             per form at L = 2048 and 16384, 64k tokens per batch (bf16)
  attention  causal SDPA (12 heads of 64, bf16) forward and forward+backward ms at the same lengths and batches
  decode     `seqmix bench --modes decode` for attention, linear attention and Mamba at ~100M non-embedding
             parameters (12 layers), run as a subprocess: tokens/s of one decode step at a 2048-token context
A point that runs out of memory or past the time budget is recorded as such and the check goes on.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from . import bench
from .dispatch import available_backends, selective_scan
from .fla_backend import resolve_recurrence_backend
from .timing import median_ms

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


@dataclass
class Shapes:
    """Everything the check sizes: the GPU run's defaults, or `tiny()` for a dry run."""

    parity: dict = field(default_factory=lambda: dict(batch=2, dim=1536, d_state=16, length=2048))
    recurrence_parity: dict = field(default_factory=lambda: dict(batch=2, heads=8, head_dim=64, length=2048))
    recurrence_lengths: tuple[int, ...] = (2048, 16384)
    scan_dim: int = 1536
    d_state: int = 16
    lengths: tuple[int, ...] = tuple(2**k for k in range(9, 17))  # 512 ... 65536
    tokens: int = 65536  # per batch: batch = max(1, tokens // L)
    heads: int = 12
    head_dim: int = 64
    dtype: str = "bfloat16"
    repeats: int = 3
    decode_args: tuple[str, ...] = (
        "--params", "100000000", "--n-layers", "12", "--seq-lens", "2048", "--decode-batch", "16",
        "--decode-steps", "32", "--dtype", "bfloat16", "--repeats", "3",
    )  # fmt: skip
    tol: float = 1e-3  # max |a - b| / max |b| for fp32 outputs and gradients

    @staticmethod
    def tiny() -> Shapes:
        return Shapes(
            parity=dict(batch=1, dim=4, d_state=3, length=20), scan_dim=4, d_state=3, lengths=(16, 32), tokens=32,
            recurrence_parity=dict(batch=1, heads=2, head_dim=4, length=20), recurrence_lengths=(16, 32),
            heads=2, head_dim=8, dtype="float32", repeats=1,
            decode_args=("--params", "20000", "--n-layers", "2", "--seq-lens", "16", "--decode-batch", "2",
                         "--decode-steps", "2", "--repeats", "1", "--warmup", "0", "--no-isolate", "--threads", "1"),
        )  # fmt: skip


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def _pairs(results: dict[str, dict[str, torch.Tensor]], tol: float, **label) -> list[dict]:
    """Each pair of backends' max relative error per compared tensor, the worst one, and whether it is within tol."""
    rows = []
    for a, b in itertools.combinations(results, 2):
        errs = {name: _rel_err(results[a][name], results[b][name]) for name in results[a]}
        worst = max(errs, key=errs.get)
        rows.append(dict(**label, a=a, b=b, max_rel_err=errs, worst=worst, ok=errs[worst] <= tol))
    return rows


def check_parity(backends: Sequence[str], batch: int, dim: int, d_state: int, length: int, device: str, tol: float) -> list:
    """Run every backend on the same inputs and upstream gradient; compare each pair's output and gradients."""
    results = {}
    for backend in backends:
        ins = bench._inputs(batch, dim, d_state, length, device, torch.float32)
        grad = torch.randn(batch, dim, length, generator=torch.Generator().manual_seed(1)).to(device)
        out = selective_scan(*ins, delta_softplus=True, backend=backend)
        out.backward(grad)
        results[backend] = {"out": out.detach(), **{n: t.grad for n, t in zip(GRAD_NAMES, ins, strict=True)}}
    return _pairs(results, tol)


def recurrence_forms(device: str, dry_run: bool) -> list[str]:
    """The recurrence forms to compare here: fla where it runs, our torch form, the sequential reference in a dry run."""
    try:
        fla = [resolve_recurrence_backend("fla", device)]
    except RuntimeError:
        fla = []
    return fla + ["chunked"] + (["reference"] if dry_run else [])


def check_recurrence_parity(forms: Sequence[str], batch: int, heads: int, head_dim: int, length: int, device: str,
                            tol: float) -> list[dict]:
    """Every kind of each recurrence through every form, same inputs and upstream gradients; compare each pair."""
    rows = []
    for kernel, decays in bench.RECURRENCES.items():
        for decay in decays:
            results = {}
            for form in forms:
                ins = bench._recurrence_inputs(kernel, decay, batch, heads, head_dim, length, device)
                o, s = bench.recurrence_call(kernel, form, ins)()
                g = torch.Generator().manual_seed(1)
                w_o, w_s = (torch.randn(t.shape, generator=g).to(device) for t in (o, s))
                ((o * w_o).sum() + (s * w_s).sum()).backward()
                grads = {n: t.grad for n, t in ins.items() if t is not None}
                results[form] = {"out": o.detach(), "state": s.detach(), **grads}
            rows += _pairs(results, tol, kernel=f"{kernel}[{decay or 'none'}]")
    return rows


def _oom_types() -> tuple[type[BaseException], ...]:
    return (torch.cuda.OutOfMemoryError, MemoryError) if hasattr(torch.cuda, "OutOfMemoryError") else (MemoryError,)


def _guarded(fn, deadline: float, device: str) -> dict:
    """fn() -> dict of timings, or a status saying why there are none (time budget, out of memory)."""
    if time.monotonic() > deadline:
        return {"status": "skipped: time budget"}
    try:
        return {"status": "ok", **fn()}
    except _oom_types() as err:
        return {"status": f"oom: {str(err).splitlines()[0][:120]}"}
    finally:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def time_scans(backends: Sequence[str], s: Shapes, device: str, deadline: float) -> list[dict]:
    """Forward and forward+backward ms of each backend at each length (batch = tokens // L)."""
    rows = []
    for backend in backends:
        for length in s.lengths:
            batch = max(1, s.tokens // length)

            def run(backend=backend, length=length, batch=batch):
                r = bench.measure(backend, batch, s.scan_dim, s.d_state, length, s.repeats, 1, device, getattr(torch, s.dtype))
                return dict(fwd_ms=r.fwd_ms, fwd_bwd_ms=r.fwd_bwd_ms)

            rows.append(dict(backend=backend, length=length, batch=batch, **_guarded(run, deadline, device)))
    return rows


def time_recurrences(forms: Sequence[str], s: Shapes, device: str, deadline: float) -> list[dict]:
    """Forward and forward+backward ms of each recurrence kind and form at each recurrence length (batch = tokens // L)."""
    rows = []
    for kernel, decays in bench.RECURRENCES.items():
        for decay, form, length in itertools.product(decays, forms, s.recurrence_lengths):
            batch = max(1, s.tokens // length)

            def run(kernel=kernel, decay=decay, form=form, length=length, batch=batch):
                r = bench.measure_recurrence(kernel, decay, form, batch, s.heads, s.head_dim, length, s.repeats, 1,
                                             device, getattr(torch, s.dtype))
                return dict(fwd_ms=r.fwd_ms, fwd_bwd_ms=r.fwd_bwd_ms)

            label = dict(kernel=f"{kernel}[{decay or 'none'}]", form=form, length=length, batch=batch)
            rows.append(dict(**label, **_guarded(run, deadline, device)))
    return rows


def time_attention(s: Shapes, device: str, deadline: float) -> list[dict]:
    """Causal SDPA forward and forward+backward ms at each length, same batches as the scans."""
    rows = []
    for length in s.lengths:
        batch = max(1, s.tokens // length)

        def run(length=length, batch=batch):
            shape = (batch, s.heads, length, s.head_dim)  # (B, heads, L, head_dim)
            q, k, v = (torch.randn(shape, device=device, dtype=getattr(torch, s.dtype), requires_grad=True) for _ in "qkv")
            grad = torch.randn_like(q)

            def fwd():
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)

            def fwd_bwd():
                torch.autograd.backward(fwd(), grad)
                q.grad = k.grad = v.grad = None

            fwd_ms = median_ms(fwd, device, s.repeats, 1)
            return dict(fwd_ms=fwd_ms, fwd_bwd_ms=median_ms(fwd_bwd, device, s.repeats, 1))

        rows.append(dict(backend="sdpa", length=length, batch=batch, **_guarded(run, deadline, device)))
    return rows


def measure_decode(s: Shapes, device: str, out_dir: str, timeout: float) -> list[dict]:
    """`seqmix bench --modes decode` for the three mixers in a subprocess; its CSV rows, trimmed."""
    if timeout < 10:
        return [{"status": "skipped: time budget"}]
    bench_out = os.path.join(out_dir, "decode")
    cmd = [
        sys.executable, "-m", "seqmix.train.tools.bench", "--mixers", "attention", "linear_attention", "mamba",
        "--modes", "decode", "--device", device, "--out", bench_out, "--overwrite", "--no-progress",
        "--time-budget", str(max(10, int(timeout / 3))), *s.decode_args,
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"status": f"skipped: seqmix bench ran past {timeout:.0f} s"}]
    path = os.path.join(bench_out, "bench.csv")
    if proc.returncode != 0 or not os.path.exists(path):
        return [{"status": f"failed: seqmix bench exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}]
    keep = ("mixer", "d_model", "n_layers", "params_non_embedding", "seq_len", "batch", "dtype", "status", "tokens_per_s")
    with open(path) as f:
        return [{k: row[k] for k in keep} for row in csv.DictReader(f)]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def to_markdown(report: dict) -> str:
    """The report's sections as Markdown tables."""
    env = report["environment"]
    lines = [
        f"# seqmix GPU check{' (dry run)' if report['dry_run'] else ''}",
        "",
        f"{env['device_name']}; torch {env['torch']}, triton {env['triton']}, mamba_ssm {env['mamba_ssm']}, "
        f"causal_conv1d {env['causal_conv1d']}, fla-core {env['fla_core']}; {report['elapsed_s']:.0f} s; "
        f"parity {'ok' if report['ok'] else 'FAILED'}",
        "",
        "## Scan parity (max |a - b| / max |b|)",
        "",
        "| a | b | " + " | ".join(("out", *GRAD_NAMES)) + " | ok |",
        "|" + "---|" * (len(GRAD_NAMES) + 4),
    ]
    for r in report["parity"]:
        errs = " | ".join(f"{r['max_rel_err'][k]:.1e}" for k in ("out", *GRAD_NAMES))
        lines.append(f"| {r['a']} | {r['b']} | {errs} | {'yes' if r['ok'] else 'NO'} |")
    lines += ["", "## Scan and attention time (ms)", "", "| backend | L | batch | fwd | fwd+bwd | status |"]
    lines.append("|---|---|---|---|---|---|")
    for r in report["scan"] + report["attention"]:
        lines.append(
            f"| {r['backend']} | {r['length']} | {r['batch']} | {_fmt(r.get('fwd_ms', '-'))} | "
            f"{_fmt(r.get('fwd_bwd_ms', '-'))} | {r['status']} |"
        )
    lines += ["", "## Recurrence parity (max |a - b| / max |b|)", "", "| kernel | a | b | out | state | worst | ok |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in report["recurrence_parity"]:
        e = r["max_rel_err"]
        lines.append(f"| {r['kernel']} | {r['a']} | {r['b']} | {e['out']:.1e} | {e['state']:.1e} | "
                     f"{r['worst']} {e[r['worst']]:.1e} | {'yes' if r['ok'] else 'NO'} |")
    lines += ["", "## Recurrence time (ms)", "", "| kernel | form | L | batch | fwd | fwd+bwd | status |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in report["recurrences"]:
        lines.append(
            f"| {r['kernel']} | {r['form']} | {r['length']} | {r['batch']} | {_fmt(r.get('fwd_ms', '-'))} | "
            f"{_fmt(r.get('fwd_bwd_ms', '-'))} | {r['status']} |"
        )
    lines += ["", "## Decode (one step, tokens/s)", ""]
    lines.append("| mixer | d_model | layers | non-emb. params | context | batch | tokens/s | status |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in report["decode"]:
        if "mixer" not in r:
            lines.append(f"| - | - | - | - | - | - | - | {r['status']} |")
            continue
        tps = f"{float(r['tokens_per_s']):,.0f}" if r["tokens_per_s"] else "-"
        lines.append(
            f"| {r['mixer']} | {r['d_model']} | {r['n_layers']} | {int(r['params_non_embedding']):,} | {r['seq_len']} | "
            f"{r['batch']} | {tps} | {r['status']} |"
        )
    return "\n".join(lines) + "\n"


def _write(report: dict, out_dir: str) -> None:
    with open(os.path.join(out_dir, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out_dir, "gpu_check.md"), "w") as f:
        f.write(to_markdown(report))


def run_check(out_dir: str, dry_run: bool = False, time_budget: float = 300.0, device: str | None = None) -> dict:
    """Run every section, writing the report after each; returns it."""
    start = time.monotonic()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not dry_run and not device.startswith("cuda"):
        raise ValueError(f"gpu_check needs a CUDA device, got {device!r}; on CPU run it with --dry-run")
    s = Shapes.tiny() if dry_run else Shapes()
    found = available_backends(device)
    parity_backends = [b for b in ("triton", "mamba_ssm", "cpu", "torch") if b in found] + (["ref"] if dry_run else [])
    timed = [b for b in ("triton", "mamba_ssm", "cpu", "torch") if b in found and (device.startswith("cuda") or b != "triton")]
    env = dict(
        device=device, device_name=torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        torch=torch.__version__, triton=_version("triton"), mamba_ssm=_version("mamba-ssm"),
        causal_conv1d=_version("causal-conv1d"), fla_core=_version("fla-core"), backends=found,
    )  # fmt: skip
    forms = recurrence_forms(device, dry_run)
    env["recurrence_forms"] = forms
    report = dict(dry_run=dry_run, environment=env, shapes=asdict(s), parity=[], scan=[], recurrence_parity=[],
                  recurrences=[], attention=[], decode=[])
    report.update(ok=True, elapsed_s=0.0)

    def done(section: str, rows: list) -> None:
        report[section] = rows
        report["ok"] = all(r["ok"] for r in report["parity"] + report["recurrence_parity"])
        report["elapsed_s"] = time.monotonic() - start
        _write(report, out_dir)

    done("parity", check_parity(parity_backends, **s.parity, device=device, tol=s.tol))
    done("scan", time_scans(timed, s, device, deadline=start + 0.45 * time_budget))
    done("recurrence_parity", check_recurrence_parity(forms, **s.recurrence_parity, device=device, tol=s.tol))
    timed_forms = [f for f in forms if f != "reference"]
    done("recurrences", time_recurrences(timed_forms, s, device, deadline=start + 0.6 * time_budget))
    done("attention", time_attention(s, device, deadline=start + 0.7 * time_budget))
    remaining = time_budget - (time.monotonic() - start) - 5
    done("decode", measure_decode(s, device, out_dir, timeout=remaining))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m seqmix.kernels.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and decode/ (created)")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes, any device: checks the command, not the GPU")
    p.add_argument("--time-budget", type=float, default=300.0, help="seconds for the whole check (default 300)")
    p.add_argument("--device", help="default: cuda when present, else cpu")
    args = p.parse_args(argv)
    if not (math.isfinite(args.time_budget) and args.time_budget > 0):
        p.error(f"--time-budget {args.time_budget}: must be a positive number of seconds")
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as err:
        p.error(f"--out {args.out}: cannot create it ({err.strerror})")
    try:
        report = run_check(args.out, args.dry_run, args.time_budget, args.device)
    except ValueError as err:
        p.error(str(err))
    print(to_markdown(report))
    print(f"wrote {os.path.join(args.out, 'gpu_check.json')} and gpu_check.md")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
