"""The shared timing loop: warmup calls untimed, exactly `repeats` timed ones, milliseconds out."""

from __future__ import annotations

import time

from seqmix.kernels.timing import median_ms, time_calls


def test_median_ms_times_repeats_after_warmup():
    calls = []

    def fn() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.004 if len(calls) > 2 else 0.05)  # the two warmup calls are slow and must not be timed

    ms = median_ms(fn, "cpu", repeats=5, warmup=2)
    assert len(calls) == 7
    assert 4.0 <= ms < 40.0


def test_time_calls_stops_at_the_deadline():
    wall, cpu = time_calls(lambda: time.sleep(0.01), "cpu", warmup=0, repeats=100, deadline=time.perf_counter() + 0.05)
    assert 1 <= len(wall) < 10 and len(cpu) == len(wall)
