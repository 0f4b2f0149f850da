"""`python -m seqmix.kernels.bench` on a tiny problem: the table, the ref cut-off note and the growth ratios."""

from __future__ import annotations

import torch

from seqmix.kernels import bench


def test_bench_prints_table_speedups_and_growth(capsys) -> None:
    argv = ["--backends", "torch", "ref", "--batch", "1", "--dim", "4", "--d-state", "2", "--lengths", "8", "32"]
    threads = torch.get_num_threads()
    try:
        rows = bench.main([*argv, "--repeats", "1", "--warmup", "0", "--ref-max-length", "8", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert [(r.backend, r.length) for r in rows] == [("ref", 8), ("torch", 8), ("torch", 32)]
    assert all(r.fwd_ms > 0 and r.fwd_bwd_ms > 0 for r in rows)
    assert "ref (sequential) skipped for L > 8 (32)" in out
    lines = out.splitlines()
    ref_row = next(line for line in lines if line.startswith("ref ") and line.split()[1] == "8")
    assert ref_row.split()[-2:] == ["1.0", "1.0"]
    torch_long = next(line for line in lines if line.startswith("torch") and line.split()[1] == "32")
    assert torch_long.split()[-2:] == ["-", "-"]
    assert "t(L=32) / t(L=8)" in out
    assert any(line.strip().startswith("torch") and "fwd+bwd" in line for line in lines)


def test_growth_pair_prefers_a_factor_of_four() -> None:
    assert bench._growth_pair([256, 1024, 4096]) == (1024, 4096)
    assert bench._growth_pair([100, 300]) == (100, 300)
    assert bench._growth_pair([64]) is None
