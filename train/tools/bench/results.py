"""The benchmark's tidy output: one CSV row per mixer x mode x length, written as it goes, read back typed."""

from __future__ import annotations

import csv
import os
import platform
from pathlib import Path
from typing import Any

import torch

from ...io import atomic_open

STATUSES = ("ok", "oom", "timeout", "error", "skipped_after_timeout", "skipped_after_oom")

COLUMNS = (
    # what was measured
    "mixer", "mixer_name", "mixer_args", "mode", "seq_len", "batch", "tokens",
    "d_model", "d_ff", "n_layers", "vocab_size", "params_non_embedding", "params_total", "dtype",
    # how it went
    "status", "message", "rounds", "repeats", "warmup", "decode_steps", "wall_s",
    # time: per step (train, prefill) or per generated token (decode)
    "time_median_s", "time_q25_s", "time_q75_s", "time_min_s", "time_max_s", "time_per_seq_s", "tokens_per_s",
    "cpu_time_median_s", "cpu_time_min_s",  # the worker's own CPU time: less disturbed by other processes
    # memory
    "peak_mem_bytes", "mem_kind", "state_bytes", "state_bytes_measured",
    # compute
    "flops", "flops_per_s", "peak_flops_per_s", "utilization",
    # environment
    "device", "device_name", "torch_version", "threads", "cpu_model", "load_avg_1m",
)
INT_COLUMNS = {
    "seq_len", "batch", "tokens", "d_model", "d_ff", "n_layers", "vocab_size", "params_non_embedding", "params_total",
    "rounds", "repeats", "warmup", "decode_steps", "peak_mem_bytes", "state_bytes", "state_bytes_measured", "threads",
}
FLOAT_COLUMNS = {
    "wall_s", "time_median_s", "time_q25_s", "time_q75_s", "time_min_s", "time_max_s", "time_per_seq_s",
    "tokens_per_s", "cpu_time_median_s", "cpu_time_min_s", "flops", "flops_per_s", "peak_flops_per_s", "utilization",
    "load_avg_1m",
}


def cpu_model() -> str:
    """The processor's model name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, threads: int | None, peak_flops: float) -> dict[str, Any]:
    """The environment columns every row carries."""
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else cpu_model(),
        "torch_version": torch.__version__,
        "threads": threads or torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "peak_flops_per_s": peak_flops,
    }


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Write rows under the fixed COLUMNS (missing cells empty), atomically: a crash leaves the previous file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for row in rows:
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"row has columns the benchmark CSV does not: {', '.join(unknown)}")
    with atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if row.get(k) is None else row[k] for k in COLUMNS} for row in rows)


def _typed(key: str, value: str) -> Any:
    if value == "":
        return None
    if key in INT_COLUMNS:
        return int(float(value))
    if key in FLOAT_COLUMNS:
        return float(value)
    return value


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a benchmark CSV, with numbers as numbers and empty cells as None."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("mixer", "mode", "seq_len", "status") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is not a seqmix bench CSV: it lacks the columns {', '.join(missing)}")
        return [{k: _typed(k, v) for k, v in row.items()} for row in reader]
