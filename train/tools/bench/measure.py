"""Measure one benchmark point in the current process: build the model, time one mode, count its state."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seqmix.archs import LanguageModel, ModelConfig
from seqmix.kernels.timing import MAX_REPEATS, sync, time_calls

MODES = ("train", "prefill", "decode")
__all__ = ["MAX_REPEATS", "sync", "time_calls"]  # the timing loop lives in seqmix.kernels.timing; importable here too
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Point:
    """One cell of the sweep: a sized model, a mode, a length and a batch, plus how to time it."""

    label: str
    config: ModelConfig
    mode: str
    seq_len: int
    batch: int
    dtype: str = "float32"
    device: str = "cpu"
    repeats: int = 5
    warmup: int = 1
    decode_steps: int = 16
    time_budget_s: float = 60.0
    seed: int = 0
    min_time_s: float = 0.0


class Probe:
    """Memory marks a measure function sets: `baseline()` just before the measured work, read back after it."""

    def baseline(self) -> None:
        """Record the memory in use now; the peak is reported relative to it."""


def state_tensor_bytes(states: list[dict[str, torch.Tensor]]) -> int:
    """Bytes held by every tensor of every layer's decode state."""
    return sum(t.numel() * t.element_size() for state in states for t in state.values())


def build_model(point: Point) -> LanguageModel:
    """The point's model on its device and dtype, seeded."""
    torch.manual_seed(point.seed)
    return LanguageModel(point.config).to(device=point.device, dtype=DTYPES[point.dtype])


def measure_point(point: Point, probe: Probe) -> dict:
    """Time one point; returns wall and CPU times (s: per call in train and prefill, per step in decode) and, for
    prefill and decode, the analytic and the held state bytes."""
    deadline = time.perf_counter() + 0.85 * point.time_budget_s  # leave room before the worker gets killed
    model = build_model(point)
    gen = torch.Generator().manual_seed(point.seed)
    vocab, b, length, device = point.config.vocab_size, point.batch, point.seq_len, point.device
    idx = torch.randint(vocab, (b, length), generator=gen).to(device)
    out: dict = {}

    if point.mode == "train":
        model.train()
        targets = torch.randint(vocab, (b, length), generator=gen).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def run() -> None:
            logits = model(idx)
            F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        probe.baseline()
        times, cpu_times = time_calls(run, device, point.warmup, point.repeats, deadline, point.min_time_s)
    elif point.mode == "prefill":
        model.eval()
        held: list = []

        def run() -> None:
            held[:] = model.prefill(idx)[1]

        probe.baseline()
        with torch.inference_mode():
            times, cpu_times = time_calls(run, device, point.warmup, point.repeats, deadline, point.min_time_s)
        out["state_bytes_measured"] = state_tensor_bytes(held)
    elif point.mode == "decode":
        model.eval()
        steps = point.decode_steps
        with torch.inference_mode():
            out["state_bytes_measured"] = state_tensor_bytes(model.prefill(idx)[1])
            # room for every step up front, so the KV cache never grows inside the timed region
            _, prompt_states = model.prefill(idx, max_len=length + steps)
            tokens = torch.randint(vocab, (steps, b), generator=gen).to(device)
            probe.baseline()

            def run() -> None:
                states = model.clone_states(prompt_states)  # step updates in place: each repeat starts alike
                sync(device)
                for t in range(steps):
                    w0, c0 = time.perf_counter(), time.process_time()
                    model.step(tokens[t], states)
                    sync(device)
                    per_token.append((time.perf_counter() - w0, time.process_time() - c0))

            # each step is one sample: a preemption by other work spoils one token's time, not a whole repeat's
            per_token: list[tuple[float, float]] = []
            time_calls(run, device, point.warmup, point.repeats, deadline, point.min_time_s)
            times, cpu_times = (list(x) for x in zip(*per_token[point.warmup * steps:], strict=True))
    else:
        raise ValueError(f"unknown mode {point.mode!r}; choose one of {', '.join(MODES)}")

    if point.mode != "train":
        out["state_bytes"] = model.state_bytes(length, b, DTYPES[point.dtype])
    out["times"] = times
    out["cpu_times"] = cpu_times
    return out


def time_stats(times: list[float]) -> dict[str, float]:
    """Median, quartiles and extremes of repeated wall times."""
    if len(times) >= 2:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    else:
        q1 = q3 = times[0]
    return {
        "time_median_s": statistics.median(times),
        "time_q25_s": q1,
        "time_q75_s": q3,
        "time_min_s": min(times),
        "time_max_s": max(times),
    }
