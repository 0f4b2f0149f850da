"""The one timing loop every benchmark uses (kernels.bench, kernels.gpu_check, seqmix bench): device work waited for,
warmup calls first, wall and CPU time per call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

MAX_REPEATS = 10_000


def sync(device: str) -> None:
    """Wait for queued device work so that wall time covers it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], None], device: str, warmup: int, repeats: int, deadline: float, min_time: float = 0.0
) -> tuple[list[float], list[float]]:
    """Run fn `warmup` times, then time it at least `repeats` times and for at least `min_time` seconds in all (so
    that cheap calls are sampled across a window longer than a burst of other work), stopping early, after one
    call, when the next would pass deadline; returns the wall times and this process's CPU times (all threads)."""
    for _ in range(warmup):
        fn()
    sync(device)
    wall: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    while len(wall) < repeats or (time.perf_counter() - start < min_time and len(wall) < MAX_REPEATS):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        if time.perf_counter() + max(wall) > deadline:
            break
    return wall, cpu


def median_ms(fn: Callable[[], None], device: str, repeats: int, warmup: int) -> float:
    """Median wall time of fn in milliseconds over `repeats` timed calls after `warmup` untimed ones."""
    wall, _ = time_calls(fn, device, warmup, repeats, deadline=float("inf"))
    return 1e3 * statistics.median(wall)
