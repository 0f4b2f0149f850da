"""The Triton backend against the reference: tests/kernels/triton_cases.py, run in a fresh process.

On CPU the kernels run in Triton's interpreter, which must be switched on (TRITON_INTERPRET=1) before
`import triton`; in a full test run another test has usually imported triton already (mamba_ssm does), so the
cases get their own interpreter process with the variable set from the start. They run in CI on CPU.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


@pytest.mark.slow  # a fresh interpreter process: 10-25 s on 2 cores
def test_triton_backend_matches_reference() -> None:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed (Linux only); the triton backend cannot run here")
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(HERE, "triton_cases.py")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"Triton cases failed ({summary}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in summary and "skipped" not in summary, summary
