"""This machine's achievable matmul FLOP/s, measured once per run: the denominator of utilisation."""

from __future__ import annotations

import time

import torch


def matmul_flops_per_s(
    device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5, threads: int | None = None
) -> float:
    """The best FLOP/s of `repeats` square (n x n) @ (n x n) matmuls after a warm-up (one multiply-add counts 2)."""
    if n < 1 or repeats < 1:
        raise ValueError(f"n and repeats must be positive, got n={n}, repeats={repeats}")
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        best = float("inf")
        for i in range(repeats + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            a @ b
            if device.startswith("cuda"):
                torch.cuda.synchronize(device)
            if i:  # the first is warm-up
                best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(saved)
    return 2.0 * n**3 / best
