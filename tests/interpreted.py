"""Run a pytest file of Triton cases in a fresh process under TRITON_INTERPRET=1 (the cases' shims patch triton and
torch globally), failing on any failure or skip there."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_interpreted(path: str, what: str, timeout: int = 900) -> None:
    """Assert that every case in `path` passes under the Triton interpreter; `what` names them in the failure."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"{what} failed ({summary}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in summary and "skipped" not in summary, summary
