"""The isolated worker: peak memory over baseline, hard time limit, out-of-memory and crashes classified."""

import os
import signal
import time

import torch

from seqmix.train.tools.bench.worker import MEM_KINDS, call_measured, is_oom, run_isolated

MB = 2**20


def allocate(n_bytes, probe):
    """Allocate and touch n_bytes after the baseline; return this process's id."""
    probe.baseline()
    x = torch.ones(n_bytes // 4, dtype=torch.float32)
    assert float(x[-1]) == 1.0
    del x
    return os.getpid()


def sleep(seconds, probe):
    time.sleep(seconds)
    return "woke"


def fail(message, probe):
    raise ValueError(message)


def sigkill(_, probe):
    os.kill(os.getpid(), signal.SIGKILL)


def test_worker_reports_a_known_allocation_above_its_baseline():
    out = run_isolated(allocate, (200 * MB,), timeout_s=60)
    assert out.status == "ok", out.message
    assert out.result != os.getpid()  # it ran in another process
    assert out.mem_kind == MEM_KINDS["cpu"]
    assert 190 * MB <= out.peak_mem_bytes <= 260 * MB


def test_worker_baseline_excludes_what_came_before():
    small = run_isolated(allocate, (1 * MB,), timeout_s=60)
    assert small.status == "ok"
    assert small.peak_mem_bytes < 40 * MB  # the interpreter and torch sit below the baseline


def test_worker_is_killed_after_its_time_budget():
    t0 = time.perf_counter()
    out = run_isolated(sleep, (30,), timeout_s=1.0)
    assert out.status == "timeout"
    assert "time budget of 1 s" in out.message
    assert time.perf_counter() - t0 < 10


def test_worker_memory_cap_turns_a_huge_allocation_into_oom():
    out = run_isolated(allocate, (4 * 2**30,), timeout_s=60, memory_limit_bytes=512 * MB)
    assert out.status == "oom", out.message
    assert "allocate" in out.message


def test_worker_errors_and_silent_deaths_are_reported():
    err = run_isolated(fail, ("bad shape 7",), timeout_s=60)
    assert err.status == "error" and err.message == "ValueError: bad shape 7"
    killed = run_isolated(sigkill, (None,), timeout_s=60)
    assert killed.status == "oom" and "SIGKILL" in killed.message


def test_in_process_call_classifies_out_of_memory():
    def raise_oom(probe):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    out = call_measured(raise_oom, (), "cpu")
    assert out.status == "oom" and out.message.startswith("OutOfMemoryError: CUDA out of memory")
    assert is_oom(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried ..."))
    assert not is_oom(RuntimeError("shape mismatch"))
