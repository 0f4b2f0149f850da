"""Run the sweep: every mixer x mode x length, each point isolated and budgeted, rows saved as they come."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import torch
from tqdm.auto import tqdm

from seqmix.archs import LanguageModel, model_summary

from .config import BenchConfig, MixerSpec
from .measure import DTYPES, Point, Probe, measure_point, time_stats
from .peak import matmul_flops_per_s
from .results import environment, write_csv
from .worker import Outcome, call_measured, run_isolated

MeasureFn = Callable[[Point, Probe], dict]

CSV_NAME = "bench.csv"
SIZE_KEYS = ("d_model", "d_ff", "params_non_embedding", "params_total")  # the model columns of a row, in order


def default_memory_limit(config: BenchConfig) -> int | None:
    """Bytes a CPU worker may map beyond its start: the configured cap, else half of physical memory (at most 80% of
    what is free now, so that an O(L^2) point fails cleanly instead of pushing other processes out)."""
    if config.device.startswith("cuda"):
        return None
    if config.memory_limit_gb is not None:
        return int(config.memory_limit_gb * 2**30)
    mem = psutil.virtual_memory()
    return int(min(mem.total / 2, mem.available * 0.8))


def measure_peak_flops(config: BenchConfig) -> float:
    """The machine's matmul FLOP/s in the sweep's dtype (fp32 on CPU), once per run."""
    on_cuda = config.device.startswith("cuda")
    dtype = DTYPES[config.dtype] if on_cuda else DTYPES["float32"]
    return matmul_flops_per_s(config.device, dtype, n=8192 if on_cuda else 2048, threads=config.threads)


def point_row(
    spec: MixerSpec, sizes: dict[str, Any], point: Point, env: dict[str, Any], outcome: Outcome, flops_per_token: float
) -> dict:
    """The CSV row of one point, from what its worker reported."""
    cfg = point.config
    tokens = point.batch * (1 if point.mode == "decode" else point.seq_len)
    row: dict[str, Any] = {
        "mixer": spec.label, "mixer_name": spec.name, "mixer_args": json.dumps(spec.options, sort_keys=True),
        "mode": point.mode, "seq_len": point.seq_len, "batch": point.batch, "tokens": tokens,
        **sizes, "n_layers": cfg.n_layers, "vocab_size": cfg.vocab_size, "dtype": point.dtype,
        "status": outcome.status, "message": outcome.message, "warmup": point.warmup,
        "decode_steps": point.decode_steps if point.mode == "decode" else None,
        "wall_s": round(outcome.wall_s, 3), "mem_kind": outcome.mem_kind or None, **env,
        "load_avg_1m": os.getloadavg()[0],  # other work on the machine makes timings noisy: say how much there was
    }
    if outcome.status != "ok":
        return row
    result = outcome.result
    times = result["times"]
    on_cpu = not point.device.startswith("cuda")  # on a GPU the host's CPU time says nothing about the work
    stats = time_stats(times)
    median = stats["time_median_s"]
    # forward FLOPs per token at context L (decode: the step at context L); backward costs about twice the forward
    flops = flops_per_token * tokens * (3 if point.mode == "train" else 1)
    row.update(stats)
    row.update({
        "repeats": len(times),
        "time_per_seq_s": median / point.batch,
        "tokens_per_s": tokens / median,
        "cpu_time_median_s": statistics.median(result["cpu_times"]) if result.get("cpu_times") and on_cpu else None,
        "cpu_time_min_s": min(result["cpu_times"]) if result.get("cpu_times") and on_cpu else None,
        "peak_mem_bytes": outcome.peak_mem_bytes,
        "state_bytes": result.get("state_bytes"),
        "state_bytes_measured": result.get("state_bytes_measured"),
        "flops": flops,
        "flops_per_s": flops / median,
        "utilization": flops / median / env["peak_flops_per_s"] if env.get("peak_flops_per_s") else None,
    })
    return row


def skipped_row(spec: MixerSpec, sizes: dict[str, Any], point: Point, env: dict[str, Any], cause: tuple[str, int]) -> dict:
    """The row of a point not run because a shorter length of the same mixer and mode failed."""
    status, length = cause
    outcome = Outcome(f"skipped_after_{status}", message=f"not run: L={length} ended in {status}")
    return point_row(spec, sizes, point, env, outcome, 0.0)


def pool(earlier: Outcome | None, new: Outcome, round_: int) -> Outcome:
    """One point's outcomes over rounds: timings concatenated, the highest memory peak, wall times added.
    A failure after a successful round keeps the samples already taken and is noted in the message."""
    if earlier is None:
        return new
    if new.status != "ok":
        note = f"round {round_ + 1}: {new.status} ({new.message})"
        return replace(earlier, message="; ".join(filter(None, [earlier.message, note])), wall_s=earlier.wall_s + new.wall_s)
    result = dict(earlier.result)
    for key in ("times", "cpu_times"):
        result[key] = list(earlier.result.get(key, [])) + list(new.result.get(key, []))
    peaks = [p for p in (earlier.peak_mem_bytes, new.peak_mem_bytes) if p is not None]
    return replace(earlier, result=result, peak_mem_bytes=max(peaks) if peaks else None,
                   wall_s=earlier.wall_s + new.wall_s, extra={"rounds": earlier.extra.get("rounds", 1) + 1})


def run_bench(
    config: BenchConfig,
    measure: MeasureFn = measure_point,
    csv_path: str | Path | None = None,
    progress: bool = True,
    env: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Measure every mixer x mode x length (shortest lengths first), `config.rounds` times over, pooling each point's
    repeats across rounds; returns the rows, also written to csv_path (default out_dir/bench.csv when out_dir is set)
    after every point. A point that times out or runs out of memory in the first round is recorded as such, and the
    longer lengths of that mixer and mode as skipped."""
    if csv_path is None and config.out_dir is not None:
        csv_path = Path(config.out_dir) / CSV_NAME
    if env is None:
        env = environment(config.device, config.threads, measure_peak_flops(config))
    specs = config.specs
    models = {s.label: config.model_config(s) for s in specs}
    summaries = {label: model_summary(cfg) for label, cfg in models.items()}
    sizes = {label: {k: s[k] for k in SIZE_KEYS} for label, s in summaries.items()}
    with torch.device("meta"):
        counters = {label: LanguageModel(cfg) for label, cfg in models.items()}
    memory_limit = default_memory_limit(config)

    plan = [(n, mode, s) for n in config.seq_lens for mode in config.modes for s in specs]
    failed: dict[tuple[str, str], tuple[str, int]] = {}
    outcomes: dict[tuple[str, str, int], Outcome] = {}
    dropped: set[tuple[str, str, int]] = set()  # failed in a later round: keep its samples, do not retry
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    bar = tqdm(total=len(plan) * config.rounds, desc="seqmix bench", unit="pt", disable=not progress, dynamic_ncols=True)
    try:
        for round_ in range(config.rounds):
            for seq_len, mode, spec in plan:
                bar.update()
                key = (spec.label, mode, seq_len)
                point = Point(
                    spec.label, models[spec.label], mode, seq_len, config.batch_for(mode, seq_len), config.dtype,
                    config.device, config.repeats, config.warmup, config.decode_steps, config.time_budget_s,
                    config.seed, config.min_time_s,
                )
                if round_ == 0 and (spec.label, mode) in failed:
                    rows[key] = skipped_row(spec, sizes[spec.label], point, env, failed[spec.label, mode])
                elif round_ == 0 or (rows[key]["status"] == "ok" and key not in dropped):
                    bar.set_postfix_str(f"{spec.label} {mode} L={seq_len}" + (f" round {round_ + 1}" if round_ else ""))
                    if config.isolate:
                        outcome = run_isolated(measure, (point,), config.time_budget_s, config.device, memory_limit,
                                               config.threads)
                    else:
                        outcome = call_measured(measure, (point,), config.device)
                    if round_ == 0 and outcome.status in ("timeout", "oom"):
                        failed[spec.label, mode] = (outcome.status, seq_len)
                    if outcome.status != "ok":
                        bar.write(f"{spec.label} {mode} L={seq_len}: {outcome.status} ({outcome.message})")
                        if round_:
                            dropped.add(key)
                    outcomes[key] = pool(outcomes.get(key), outcome, round_)
                    row = point_row(spec, sizes[spec.label], point, env, outcomes[key],
                                    counters[spec.label].flops_per_token(seq_len))
                    row["rounds"] = outcomes[key].extra.get("rounds", 1) if row["status"] == "ok" else None
                    rows[key] = row
                else:
                    continue
                if csv_path is not None:
                    write_csv(csv_path, list(rows.values()))
    finally:
        bar.close()
    return list(rows.values())
