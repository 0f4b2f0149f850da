"""Condense benchmark rows: cost exponents per mixer and mode, crossovers against attention, decode state."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

from .powerlaw import crossover, fit_power_law

ENV_KEYS = ("device", "device_name", "torch_version", "threads", "cpu_model", "peak_flops_per_s")
MODEL_KEYS = ("mixer_name", "mixer_args", "d_model", "d_ff", "n_layers", "vocab_size", "params_non_embedding",
              "params_total", "dtype")
QUADRATIC = "attention"
"""The registry name whose arms are the reference that O(n) mixers are set against."""


def _ordered(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


STATS = ("median", "min")
"""Which per-point time statistic fits and ratios use: the median, or the least-disturbed (min) repeat."""


def cost(row: dict[str, Any], stat: str = "median") -> float | None:
    """The time a point's exponent is fitted on: seconds per sequence per step, or per decode step in decode mode."""
    t = row.get(f"time_{stat}_s")
    return t if t is None or row["mode"] == "decode" else t / row["batch"]


def cpu_cost(row: dict[str, Any], stat: str = "median") -> float | None:
    """As `cost`, from the worker's CPU time instead of wall time."""
    t = row.get(f"cpu_time_{stat}_s")
    return t if t is None or row["mode"] == "decode" else t / row["batch"]


def memory(row: dict[str, Any]) -> float | None:
    """The memory a point's exponent is fitted on: peak bytes per sequence (train, prefill), decode-state bytes."""
    if row["mode"] == "decode":
        return row.get("state_bytes")
    peak = row.get("peak_mem_bytes")
    return peak / row["batch"] if peak else None


def _series(rows: list[dict[str, Any]], value) -> tuple[list[float], list[float]]:
    pts = [(r["seq_len"], value(r)) for r in rows if r["status"] == "ok" and value(r) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _fit(rows: list[dict[str, Any]], value, min_len: int | None) -> dict[str, Any] | None:
    law = fit_power_law(*_series([r for r in rows if min_len is None or r["seq_len"] >= min_len], value))
    return law.to_dict() if law else None


def decode_summary(rows: list[dict[str, Any]], stat: str = "median") -> dict[str, Any]:
    """Per-token latency growth from the shortest to the longest measured context, and state bytes against L."""
    ok = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["seq_len"])
    if not ok:
        return {}
    lo, hi = ok[0], ok[-1]
    wall, cpu = partial(cost, stat=stat), partial(cpu_cost, stat=stat)
    agree = all(r.get("state_bytes") == r.get("state_bytes_measured") for r in ok)
    return {
        "latency_s": {r["seq_len"]: wall(r) for r in ok},
        "L_lo": lo["seq_len"],
        "L_hi": hi["seq_len"],
        "latency_ratio": wall(hi) / wall(lo),
        "latency_vs_shortest": {r["seq_len"]: wall(r) / wall(lo) for r in ok},
        "cpu_latency_vs_shortest": {r["seq_len"]: cpu(r) / cpu(lo) for r in ok if cpu(r) and cpu(lo)},
        "state_bytes": {r["seq_len"]: r.get("state_bytes") for r in ok},
        "state_bytes_measured": {r["seq_len"]: r.get("state_bytes_measured") for r in ok},
        "state_bytes_agree": agree,
    }


def summarize(rows: list[dict[str, Any]], fit_min_len: int | None = None, stat: str = "median") -> dict[str, Any]:
    """Exponents (log-log least squares, over lengths >= fit_min_len if given) of time and memory per mixer and mode,
    crossover lengths of each O(n) mixer against each attention arm (all lengths), decode latency ratios and
    state-byte checks, and what each point ended as; times are each point's `stat` (median or min) over repeats."""
    if not rows:
        raise ValueError("no benchmark rows to summarise")
    if stat not in STATS:
        raise ValueError(f"unknown time statistic {stat!r}; choose one of {', '.join(STATS)}")
    wall, cpu = partial(cost, stat=stat), partial(cpu_cost, stat=stat)
    labels = _ordered([r["mixer"] for r in rows])
    modes = _ordered([r["mode"] for r in rows])
    by = {(m, mode): [r for r in rows if r["mixer"] == m and r["mode"] == mode] for m in labels for mode in modes}
    first = {m: next(r for r in rows if r["mixer"] == m) for m in labels}
    quadratic = [m for m in labels if first[m]["mixer_name"] == QUADRATIC]
    linear = [m for m in labels if m not in quadratic]

    fits: dict[str, dict[str, Any]] = {}
    crossovers: dict[str, dict[str, Any]] = {}
    for mode in modes:
        fits[mode] = {
            m: {key: _fit(by[m, mode], value, fit_min_len) for key, value in
                (("time", wall), ("cpu_time", cpu), ("memory", memory))}
            for m in labels
        }
        crossovers[mode] = {}
        for ref in quadratic:
            for ch in linear:
                c = crossover(*_series(by[ref, mode], wall), *_series(by[ch, mode], wall))
                crossovers[mode][f"{ch} vs {ref}"] = c.to_dict()
    return {
        "environment": {k: rows[0].get(k) for k in ENV_KEYS},
        "models": {m: {k: first[m].get(k) for k in MODEL_KEYS} for m in labels},
        "seq_lens": sorted({r["seq_len"] for r in rows}),
        "fit_min_len": fit_min_len,
        "stat": stat,
        "fits": fits,
        "crossovers": crossovers,
        "decode": {m: decode_summary(by[m, "decode"], stat) for m in labels} if "decode" in modes else {},
        "status_counts": dict(Counter(r["status"] for r in rows)),
        "failures": [
            {k: r.get(k) for k in ("mixer", "mode", "seq_len", "status", "message")} for r in rows if r["status"] != "ok"
        ],
    }


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _exp(fit: dict[str, Any] | None) -> str:
    return f"{fit['exponent']:.2f}" if fit else "  - "


def format_summary(summary: dict[str, Any]) -> str:
    """A plain-text report of a summary: exponents table, crossovers, decode latency and state."""
    env = summary["environment"]
    lines = [
        f"device {env['device']} ({env['device_name']}), torch {env['torch_version']}, {env['threads']} threads, "
        f"matmul peak {(env['peak_flops_per_s'] or 0) / 1e9:.1f} GFLOP/s",
        "models: " + "; ".join(
            f"{m} d_model={v['d_model']} d_ff={v['d_ff']} params={_count(v['params_non_embedding'])}"
            for m, v in summary["models"].items()
        ),
        "",
        "fitted log-log exponents (time per sequence step / per decode step; memory: peak per sequence, "
        "decode: state bytes)" + (f", over L >= {summary['fit_min_len']}" if summary.get("fit_min_len") else "")
        + f"; times are each point's {summary.get('stat', 'median')} over its repeats",
    ]
    for mode, per_mixer in summary["fits"].items():
        for m, f in per_mixer.items():
            span = f" over L={f['time']['x_min']:g}..{f['time']['x_max']:g} ({f['time']['n_points']} pts)" if f["time"] else ""
            lines.append(f"  {mode:8s} {m:20s} time {_exp(f['time'])}  cpu time {_exp(f.get('cpu_time'))}  "
                         f"memory {_exp(f['memory'])}{span}")
    lines.append("")
    lines.append("crossover (the O(n) mixer becomes faster than attention):")
    for mode, pairs in summary["crossovers"].items():
        for pair, c in pairs.items():
            where = f"L ≈ {c['length']:.0f}" if c["length"] else c["status"]
            if c.get("extrapolated"):
                where += f" (power laws cross at L ≈ {c['extrapolated']:.0f})"
            lines.append(f"  {mode:8s} {pair:42s} {where}")
    if summary["decode"]:
        lines.append("")
        lines.append("decode: per-token latency (longest / shortest context) and state bytes")
        for m, d in summary["decode"].items():
            if not d:
                lines.append(f"  {m:20s} no successful decode points")
                continue
            states = ", ".join(f"L={n}: {_count(b)}" for n, b in d["state_bytes"].items())
            ratios = ", ".join(f"{n}: {x:.2f}x" for n, x in d["latency_vs_shortest"].items())
            cpu = ", ".join(f"{n}: {x:.2f}x" for n, x in d.get("cpu_latency_vs_shortest", {}).items())
            lines.append(f"  {m:20s} {d['latency_s'][d['L_lo']] * 1e3:.3f} ms @ L={d['L_lo']}; wall relative: {ratios}")
            if cpu:
                lines.append(f"  {'':20s} cpu time relative: {cpu}")
            lines.append(f"  {'':20s} state bytes {states} (held tensors agree: {d['state_bytes_agree']})")
    lines.append("")
    lines.append("points: " + ", ".join(f"{k} {v}" for k, v in summary["status_counts"].items()))
    for f in summary["failures"]:
        lines.append(f"  {f['mixer']} {f['mode']} L={f['seq_len']}: {f['status']} {f['message'] or ''}".rstrip())
    return "\n".join(lines)
