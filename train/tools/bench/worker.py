"""Run a measurement in a fresh worker process: peak memory over a baseline, a hard time limit, OOM caught."""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .measure import Probe

MEM_KINDS = {
    "cpu": "cpu_peak_rss_over_baseline",
    "cuda": "cuda_max_allocated_over_baseline",
}
OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


@dataclass
class Outcome:
    """What one isolated call produced: status ok / oom / timeout / error, its result and peak memory."""

    status: str
    result: Any = None
    message: str = ""
    peak_mem_bytes: int | None = None
    mem_kind: str = ""
    wall_s: float = 0.0
    extra: dict = field(default_factory=dict)


def _proc_status(key: str) -> int:
    """A size field of /proc/self/status (VmRSS, VmHWM, VmSize), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water RSS mark of this process (Linux clear_refs 5); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    """The high-water RSS of this process in bytes."""
    try:
        return _proc_status("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss() -> int:
    try:
        return _proc_status("VmRSS")
    except (OSError, KeyError):
        return _peak_rss()


class MemoryProbe(Probe):
    """Peak memory above a baseline: CUDA allocator peak on a GPU, else the process's high-water RSS."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.device = device
        self.kind = MEM_KINDS["cuda" if self.cuda else "cpu"]
        self.base: int | None = None

    def baseline(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = _current_rss()
            if not _reset_peak_rss():  # without a reset the peak may include setup; it is never below the baseline
                self.kind = "cpu_peak_rss_over_baseline_unreset"

    def peak_over_baseline(self) -> int | None:
        """Peak bytes above the baseline since baseline() (None if baseline() was never called)."""
        if self.base is None:
            return None
        peak = torch.cuda.max_memory_allocated(self.device) if self.cuda else _peak_rss()
        return max(0, peak - self.base)


def is_oom(exc: BaseException) -> bool:
    """Whether an exception means the device or process ran out of memory."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MARKERS)


def describe(exc: BaseException) -> str:
    """One line naming an exception: its type and the first line of its message."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:300]


def call_measured(fn: Callable[..., Any], args: tuple, device: str) -> Outcome:
    """Call fn(*args, probe) here, classifying failures; memory is measured against the probe's baseline."""
    probe = MemoryProbe(device)
    t0 = time.perf_counter()
    try:
        result = fn(*args, probe)
    except BaseException as exc:  # noqa: BLE001  (a worker must report, whatever happened)
        if isinstance(exc, KeyboardInterrupt):
            raise
        status = "oom" if is_oom(exc) else "error"
        return Outcome(status, message=describe(exc), mem_kind=probe.kind, wall_s=time.perf_counter() - t0)
    return Outcome("ok", result, peak_mem_bytes=probe.peak_over_baseline(), mem_kind=probe.kind,
                   wall_s=time.perf_counter() - t0)


def _child(conn, fn: Callable[..., Any], args: tuple, device: str, memory_limit: int | None, threads: int | None) -> None:
    """Worker entry: cap address space (CPU), set threads, measure, send the Outcome back."""
    if threads:
        torch.set_num_threads(threads)
    if memory_limit is not None and not device.startswith("cuda"):
        # a cap on address space turns a would-be machine-wide OOM into a clean allocation failure here
        limit = _proc_status("VmSize") + memory_limit
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    conn.send(call_measured(fn, args, device))
    conn.close()


_CTX: mp.context.BaseContext | None = None


def context() -> mp.context.BaseContext:
    """A forkserver context preloaded with torch and the models (fresh, cheap processes), else spawn."""
    global _CTX
    if _CTX is None:
        if "forkserver" in mp.get_all_start_methods():
            _CTX = mp.get_context("forkserver")
            # torch._dynamo is what building an optimizer imports first: ~2 s a worker would otherwise spend
            _CTX.set_forkserver_preload(["torch", "torch._dynamo", "torch.optim", "seqmix.archs",
                                         "seqmix.train.tools.bench.measure"])
        else:
            _CTX = mp.get_context("spawn")
    return _CTX


def run_isolated(
    fn: Callable[..., Any],
    args: tuple,
    timeout_s: float,
    device: str = "cpu",
    memory_limit_bytes: int | None = None,
    threads: int | None = None,
) -> Outcome:
    """Run fn(*args, probe) in a fresh process; kill it after timeout_s. fn must be importable (module level)."""
    ctx = context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args, device, memory_limit_bytes, threads), daemon=True)
    t0 = time.perf_counter()
    proc.start()
    send.close()
    outcome: Outcome | None = None
    timed_out = False
    try:
        if recv.poll(timeout_s):
            try:
                outcome = recv.recv()
            except EOFError:  # the process died before sending anything
                outcome = None
        else:
            timed_out = True
    finally:
        proc.join(timeout=0 if timed_out else 5.0)
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()
    if timed_out:
        outcome = Outcome("timeout", message=f"exceeded the per-point time budget of {timeout_s:g} s")
    if outcome is None:  # the process died without a word: the kernel's OOM killer sends SIGKILL
        code = proc.exitcode
        if code == -9:
            outcome = Outcome("oom", message="worker killed by SIGKILL (likely the out-of-memory killer)")
        else:
            outcome = Outcome("error", message=f"worker exited with code {code} without a result")
    outcome.wall_s = time.perf_counter() - t0
    return outcome

