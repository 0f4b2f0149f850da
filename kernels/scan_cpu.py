"""Fused CPU selective scan: kernels/csrc/scan_cpu.c, built with the system C compiler on first use.

One pass over L per (batch, channel) row with the (N,) state in registers, so short sequences pay no per-step
Python or dispatch overhead (the chunked PyTorch scan runs ~4 small ops per step of its chunk). The library is
compiled once per source and machine (-march=native) into $SEQMIX_CACHE (default ~/.cache/seqmix)/kernels and
loaded with ctypes (no Python headers, no torch headers: a build takes about a second). Where no compiler is found
or the build fails, `available()` is False, `why_unavailable()` says why, and dispatch falls back to `torch`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading

import torch
import torch.nn.functional as F
from torch import Tensor

from .groups import as_grouped
from .scan_inputs import ScanInputs
from .scan_ref import selective_scan_ref

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "scan_cpu.c")
CFLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC")
ABI = 2

_lock = threading.Lock()
_state: dict[str, object] = {}


def _cache_dir() -> str:
    root = os.environ.get("SEQMIX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "seqmix")
    return os.path.join(root, "kernels")


def _build() -> ctypes.CDLL:
    """Compile (once per source, flags and machine) and load the library; RuntimeError saying why not."""
    if os.environ.get("SEQMIX_NO_CPU_KERNEL", "0") not in ("", "0"):
        raise RuntimeError("SEQMIX_NO_CPU_KERNEL is set")
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc, gcc or $CC) on PATH")
    with open(SOURCE, "rb") as f:
        src = f.read()
    key = hashlib.sha256(src + " ".join((compiler, *CFLAGS, platform.machine(), platform.node())).encode()).hexdigest()
    path = os.path.join(_cache_dir(), f"scan_cpu-{key[:16]}.so")
    if not os.path.exists(path):
        os.makedirs(_cache_dir(), exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=_cache_dir())
        os.close(fd)
        proc = subprocess.run([compiler, *CFLAGS, "-o", tmp, SOURCE, "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
            os.unlink(tmp)
            raise RuntimeError(f"{compiler} failed: {proc.stderr.strip()[-400:]}")
        os.replace(tmp, path)  # atomic: concurrent builders each install a whole file
    lib = ctypes.CDLL(path)
    if lib.seqmix_scan_abi() != ABI:
        raise RuntimeError(f"{path} has another ABI than {ABI}")
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded library, building it on the first call; None when it cannot be built here."""
    with _lock:
        if "lib" not in _state:
            try:
                _state["lib"], _state["why"] = _build(), None
            except (RuntimeError, OSError) as err:
                _state["lib"], _state["why"] = None, str(err)
        return _state["lib"]


def available() -> bool:
    """Whether the fused CPU scan can run (builds it if needed)."""
    return library() is not None


def why_unavailable() -> str | None:
    """Why `available()` is False (None when it is True)."""
    library()
    return _state.get("why")


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


def _f32(t: Tensor | None) -> Tensor | None:
    return t.detach().float().contiguous() if t is not None else None


def _time_major(M: Tensor, G: int) -> Tensor:
    """(batch, [G,] N, L) -> (batch, G, L, N) fp32 contiguous: the states of one step side by side."""
    return as_grouped(M.detach(), G).float().transpose(-1, -2).contiguous()


class _SelectiveScanCPU(torch.autograd.Function):
    """The recurrence in C; bias, softplus, the D skip and the z gate as a few elementwise PyTorch ops around it."""

    @staticmethod
    def forward(ctx, *fields):  # fields: ScanInputs' own, each tensor its own argument for autograd
        x = ScanInputs(*fields)
        lib = library()
        batch, dim, length = x.u.shape
        G, N = x.groups, x.A.shape[1]
        dt = x.discretised()[1].contiguous()
        uf, Af = _f32(x.u), _f32(x.A)
        y = torch.empty(batch, dim, length, dtype=torch.float32)
        last = torch.empty(batch, dim, N, dtype=torch.float32)
        Bt, Ct = _time_major(x.B, G), _time_major(x.C, G)  # bound to names: the C call must not outlive them
        lib.seqmix_scan_fwd(
            *map(_ptr, (dt, uf, Af, Bt, Ct, y, last)),
            batch, dim, G, length, N, torch.get_num_threads(),
        )  # fmt: skip
        if x.D is not None:
            y.addcmul_(uf, x.channelwise(x.D))
        out = y * F.silu(x.z.float()) if x.z is not None else y
        ctx.save_for_backward(*x.tensors, y if x.z is not None else None)
        ctx.delta_softplus = x.delta_softplus
        ctx.set_materialize_grads(False)
        return out.to(x.u.dtype), last

    @staticmethod
    def backward(ctx, gout, glast):
        *tensors, y = ctx.saved_tensors
        x = ScanInputs(*tensors, ctx.delta_softplus)
        lib = library()
        batch, dim, length = x.u.shape
        G, N = x.groups, x.A.shape[1]
        H, threads = dim // G, torch.get_num_threads()
        # Channel blocks per (batch, group): enough work items for every thread, each with its own dB / dC partial.
        nblk = max(1, min(H, -(-4 * threads // (batch * G)))) if threads > 1 else 1
        dt_raw, dt = x.discretised()
        dt = dt.contiguous()
        uf = _f32(x.u)
        g_out = gout.float() if gout is not None else uf.new_zeros(uf.shape)
        dz = None
        if x.z is not None:
            zf = x.z.float()
            sig = torch.sigmoid(zf)
            dz = g_out * y * sig * (1 + zf * (1 - sig))  # d silu(z)/dz = sig * (1 + z * (1 - sig))
            gy = (g_out * zf * sig).contiguous()
        else:
            gy = g_out.contiguous()
        f32 = dict(dtype=torch.float32)
        du, ddt = torch.empty(batch, dim, length, **f32), torch.empty(batch, dim, length, **f32)
        dA = torch.empty(batch, dim, N, **f32)
        dB, dC = torch.empty(batch, G, nblk, length, N, **f32), torch.empty(batch, G, nblk, length, N, **f32)
        Af, Bt, Ct, gl = _f32(x.A), _time_major(x.B, G), _time_major(x.C, G), _f32(glast)
        lib.seqmix_scan_bwd(
            *map(_ptr, (dt, uf, Af, Bt, Ct, gy, gl)),
            *map(_ptr, (du, ddt, dA, dB, dC)),
            batch, dim, G, length, N, nblk, threads,
        )  # fmt: skip
        dD = None
        if x.D is not None:
            du.addcmul_(gy, x.channelwise(x.D))
            dD = (gy * uf).sum((0, 2))
        if ctx.delta_softplus:
            ddt.mul_(torch.sigmoid(dt_raw))
        dbias = ddt.sum((0, 2)) if x.delta_bias is not None else None
        dB, dC = dB.sum(2).transpose(-1, -2), dC.sum(2).transpose(-1, -2)  # (batch, G, N, L)
        return x.gradients(du, ddt, dA.sum(0), dB, dC, dD, dz, dbias)


def selective_scan_cpu(x: ScanInputs) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan by the fused C loop (fp32 state and arithmetic, output in u's dtype); CPU tensors only."""
    if x.u.device.type != "cpu":
        raise RuntimeError(f"backend 'cpu' needs CPU tensors; got device {x.u.device.type}")
    if library() is None:
        raise RuntimeError(f"backend 'cpu' is unavailable: {why_unavailable()}")
    if x.u.shape[-1] == 0:
        return selective_scan_ref(x)
    with torch.autocast("cpu", enabled=False):
        return x.output(*_SelectiveScanCPU.apply(*x))
