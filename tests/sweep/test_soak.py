"""Soak: a 24-run local sweep whose workers (and, once, the runner itself) are SIGKILLed at random still ends with
every run in the results table exactly once, and the table is never truncated or shrinks while that happens."""

import csv
import random
import signal
import threading
import time

import psutil
import pytest

from seqmix.train.tools.sweep.plan import plan_runs
from seqmix.train.tools.sweep.spec import load_spec

from .helpers import launches, spawn_runner, stub_env, write_sweep

RUNS = 40


class Killer(threading.Thread):
    """SIGKILLs a random run of the current runner every 0.1-0.4 s while `active` is set."""

    def __init__(self, rng: random.Random):
        super().__init__(daemon=True)
        self.rng, self.runner_pid, self.kills = rng, None, 0
        self.active, self.done = threading.Event(), threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            time.sleep(self.rng.uniform(0.1, 0.4))
            if not self.active.is_set() or self.runner_pid is None:
                continue
            try:
                children = psutil.Process(self.runner_pid).children()
            except psutil.NoSuchProcess:
                continue
            if children:
                try:
                    self.rng.choice(children).send_signal(signal.SIGKILL)
                    self.kills += 1
                except psutil.NoSuchProcess:
                    pass


class TableWatcher(threading.Thread):
    """Reads results.csv over and over: it must always parse whole, and its row count must never go down."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.done, self.reads, self.problems, self.most = path, threading.Event(), 0, [], 0

    def run(self) -> None:
        while not self.done.is_set():
            if self.path.exists():
                with open(self.path, newline="") as f:
                    text = f.read()
                rows = list(csv.DictReader(text.splitlines()))
                header = text.split("\n", 1)[0].split(",")
                if header[:2] != ["run_id", "status"] or header[-1] != "error" or not text.endswith("\n"):
                    self.problems.append(f"bad table: {text[-200:]!r}")
                if any(not r["run_id"] or r["error"] is None for r in rows):
                    self.problems.append("a row lost its fields")
                if len(rows) < self.most:
                    self.problems.append(f"rows went from {self.most} to {len(rows)}")
                self.most = max(self.most, len(rows))
                self.reads += 1
            time.sleep(0.005)


@pytest.mark.slow
def test_soak_random_sigkills_every_run_ends_in_the_table_exactly_once(tmp_path, monkeypatch):
    log = tmp_path / "stub.log"
    monkeypatch.setenv("STUB_LOG", str(log))
    sweep = write_sweep(tmp_path, {"x": {"min": 0, "max": 10**6}, "sleep": {"min": 0.1, "max": 0.5}}, method="random")
    planned = {r.run_id for r in plan_runs(load_spec(sweep), max_runs=RUNS, seed=11)}
    assert len(planned) == RUNS
    out = tmp_path / "out"
    args = ("--workers", "4", "--retries", "3", "--max-runs", str(RUNS), "--seed", "11")

    killer, watcher = Killer(random.Random(0)), TableWatcher(out / "results.csv")
    killer.start()
    watcher.start()
    start = time.monotonic()
    try:
        # invocation 1: workers die at random, and the runner itself is SIGKILLed once a third of the runs are in
        killer.active.set()
        runner = spawn_runner(sweep, out, stub_env(log), *args)
        killer.runner_pid = runner.pid
        while runner.poll() is None and watcher.most < RUNS // 3:
            time.sleep(0.02)
        runner.kill()
        runner.wait()
        # invocations 2-3 under fire, later ones in peace, until the sweep reports every run ok
        codes = []
        for attempt in range(8):
            if attempt == 2:
                killer.active.clear()
            runner = spawn_runner(sweep, out, stub_env(log), *args)
            killer.runner_pid = runner.pid
            output, _ = runner.communicate(timeout=120)
            codes.append(runner.returncode)
            if runner.returncode == 0:
                break
        assert codes[-1] == 0, output
    finally:
        killer.done.set()
        watcher.done.set()
        killer.join()
        watcher.join()
    elapsed = time.monotonic() - start

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["run_id"] for r in rows) == sorted(planned)  # every run exactly once, nothing else
    assert all(r["status"] == "ok" for r in rows)
    starts, ends, _ = launches(log)
    assert all(ends[rid] >= 1 for rid in planned)
    assert killer.kills >= 5, f"the soak killed only {killer.kills} workers"
    assert sum(starts.values()) > RUNS  # some runs did run more than once: the kills landed
    assert watcher.reads > 50 and not watcher.problems, watcher.problems[:3]
    print(f"soak: {RUNS} runs, {killer.kills} worker SIGKILLs + 1 runner SIGKILL, {sum(starts.values())} launches, "
          f"{len(codes) + 1} invocations, {elapsed:.1f} s")
