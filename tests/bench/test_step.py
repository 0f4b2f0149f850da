"""`python -m seqmix.train.tools.bench.step` at a tiny size: every arm measured, ratios printed against attention."""

from __future__ import annotations

import pytest
import torch

from seqmix.train.tools.bench import step


def test_prints_every_arm_and_its_ratio(capsys) -> None:
    threads = torch.get_num_threads()
    try:
        rows = step.main(["--seq-len", "8", "--batch", "2", "--params", "5000", "--repeats", "2"])
    finally:
        torch.set_num_threads(threads)
    assert set(rows) == set(step.ARMS)
    assert all(r["step_s"] > 0 and r["tokens_per_s"] == pytest.approx(16 / r["step_s"]) for r in rows.values())
    out = capsys.readouterr().out
    assert "Mamba's auto scan backend on CPU:" in out
    assert next(line for line in out.splitlines() if "attention " in line).rstrip().endswith("1.00x attention")
    assert sum("x attention" in line for line in out.splitlines()) == 3


def test_rejects_non_positive_sizes(capsys) -> None:
    with pytest.raises(SystemExit):
        step.main(["--batch", "0"])
    assert "--batch 0: must be a positive integer" in capsys.readouterr().err
