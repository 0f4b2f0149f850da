"""Shared helpers of the sweep tests: a sweep file around the stub program, the stub's launch log, the results table."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

STUB = Path(__file__).with_name("stub_program.py")


def write_sweep(folder: Path, params: dict[str, Any], method: str = "grid", name: str = "stub", **extra: Any) -> Path:
    """A W&B sweep file whose program is the stub; returns its path."""
    raw = {"program": str(STUB), "name": name, "method": method, "metric": {"name": "val/score", "goal": "maximize"},
           "command": ["${interpreter}", "${program}", "${args}"], "parameters": params, **extra}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def read_table(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of OUT/results.csv."""
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def launches(log: Path) -> tuple[Counter, Counter, dict[str, list[int]]]:
    """From the stub's log: starts per run id, ends per run id, pids per run id."""
    starts, ends, pids = Counter(), Counter(), {}
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if parts[0] == "start":
                starts[parts[1]] += 1
                pids.setdefault(parts[1], []).append(int(parts[2]))
            elif parts[0] == "end":
                ends[parts[1]] += 1
    return starts, ends, pids


def stub_env(log: Path, **extra: str) -> dict[str, str]:
    """Environment for a runner subprocess: the stub logs its launches to `log`."""
    return {**os.environ, "STUB_LOG": str(log), **extra}


def spawn_runner(sweep: Path, out: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """`python -m seqmix.train.tools.sweep SWEEP --out OUT ...` as a child process (its output captured)."""
    return subprocess.Popen([sys.executable, "-m", "seqmix.train.tools.sweep", str(sweep), "--out", str(out), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02) -> None:
    """Poll until predicate() is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)
