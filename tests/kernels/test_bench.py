"""`python -m seqmix.kernels.bench` on tiny problems: the scan table, the ref cut-off note and the growth ratios; the
recurrences' chunked-vs-reference speedups and fitted time exponents."""

from __future__ import annotations

import pytest
import torch

from seqmix.kernels import bench
from seqmix.kernels.bench import RecurrenceRow


def test_bench_prints_table_speedups_and_growth(capsys) -> None:
    argv = ["--kernels", "selective_scan", "--backends", "torch", "ref", "--batch", "1", "--dim", "4", "--d-state", "2"]
    argv += ["--lengths", "8", "32"]
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


def test_bench_recurrences_print_speedup_and_exponent(capsys) -> None:
    argv = ["--kernels", "gated_linear_attention", "delta_rule", "--heads", "1", "--head-dim", "2", "--rec-batch", "1"]
    argv += ["--rec-lengths", "8", "32", "--speedup-length", "8", "--repeats", "1", "--warmup", "0"]
    rows = bench.main(argv)
    out = capsys.readouterr().out
    kinds = ["gated_linear_attention[none]", "gated_linear_attention[head]", "gated_linear_attention[channel]",
             "delta_rule[none]", "delta_rule[head]"]
    assert all(isinstance(r, RecurrenceRow) for r in rows)
    assert [(r.kernel, r.form, r.length) for r in rows] == [
        (k, form, n) for k in kinds for form, n in (("reference", 8), ("chunked", 8), ("chunked", 32))
    ]
    summary = out[out.index("fwd+bwd exponent"):].splitlines()[1:]
    assert [line.split()[0] for line in summary] == kinds
    for line, kind in zip(summary, kinds, strict=True):
        at8 = {r.form: r for r in rows if r.kernel == kind and r.length == 8}
        ref, fast = at8["reference"], at8["chunked"]
        fx, bx, span, exponent = line.split()[1:]
        assert float(fx) == round(ref.fwd_ms / fast.fwd_ms, 1) and float(bx) == round(ref.fwd_bwd_ms / fast.fwd_bwd_ms, 1)
        long = next(r for r in rows if r.kernel == kind and r.length == 32)
        assert span == "8-32" and float(exponent) == round(bench.fit_exponent([8, 32], [fast.fwd_bwd_ms, long.fwd_bwd_ms]), 2)


def test_fit_exponent_recovers_a_power_law() -> None:
    lengths = [1024, 2048, 4096, 8192, 16384]
    assert bench.fit_exponent(lengths, [3.0 * n**1.1 for n in lengths]) == pytest.approx(1.1)
    assert bench.fit_exponent(lengths, [5.0 for _ in lengths]) == pytest.approx(0.0)
