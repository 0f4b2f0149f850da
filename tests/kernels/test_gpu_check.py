"""`python -m seqmix.kernels.gpu_check`: the dry run end to end on CPU, its JSON and Markdown, and that the parity
check, the time budget and the out-of-memory guard report what happened."""

from __future__ import annotations

import json

import pytest
import torch

from seqmix.kernels import bench, gpu_check


@pytest.mark.slow  # every section at tiny shapes, decode through a `seqmix bench` subprocess: ~20 s on 2 cores
def test_dry_run_writes_every_section(tmp_path, capsys) -> None:
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] and report["ok"]
    env_keys = {"device", "device_name", "torch", "triton", "mamba_ssm", "causal_conv1d", "fla_core", "backends"}
    assert env_keys <= set(report["environment"]) and report["environment"]["recurrence_forms"] == ["chunked", "reference"]
    pairs = {(r["a"], r["b"]) for r in report["parity"]}
    assert ("torch", "ref") in pairs
    for r in report["parity"]:
        assert set(r["max_rel_err"]) == {"out", *gpu_check.GRAD_NAMES} and r["ok"]
        assert all(0 <= e <= 1e-3 for e in r["max_rel_err"].values())
    lengths = report["shapes"]["lengths"]
    timed = [b for b in ("cpu", "torch") if b in report["environment"]["backends"]]
    assert [(r["backend"], r["length"]) for r in report["scan"]] == [(b, L) for b in timed for L in lengths]
    assert [(r["backend"], r["length"]) for r in report["attention"]] == [("sdpa", L) for L in lengths]
    for r in report["scan"] + report["attention"]:
        assert r["status"] == "ok" and 0 < r["fwd_ms"] and 0 < r["fwd_bwd_ms"], r
        assert r["batch"] == max(1, report["shapes"]["tokens"] // r["length"])
    kinds = [f"{k}[{d or 'none'}]" for k, decays in bench.RECURRENCES.items() for d in decays]
    assert [(r["kernel"], r["a"], r["b"]) for r in report["recurrence_parity"]] == [(k, "chunked", "reference") for k in kinds]
    assert all(r["ok"] and {"out", "state", "q", "k", "v"} <= set(r["max_rel_err"]) for r in report["recurrence_parity"])
    rec_lengths = report["shapes"]["recurrence_lengths"]
    assert [(r["kernel"], r["form"], r["length"]) for r in report["recurrences"]] == [
        (k, "chunked", L) for k in kinds for L in rec_lengths]
    for r in report["recurrences"]:
        assert r["status"] == "ok" and 0 < r["fwd_ms"] and 0 < r["fwd_bwd_ms"], r
    assert sorted(r["mixer"] for r in report["decode"]) == ["attention", "linear_attention", "mamba"]
    assert all(r["status"] == "ok" and float(r["tokens_per_s"]) > 0 for r in report["decode"])
    md = (tmp_path / "gpu_check.md").read_text()
    for head in ("## Scan parity", "## Scan and attention time (ms)", "## Recurrence parity", "## Recurrence time (ms)",
                 "## Decode (one step, tokens/s)"):
        assert head in md
    rows = len(report["scan"]) + len(report["attention"]) + len(report["recurrences"]) + len(report["decode"])
    assert md.count("| ok |") == 2 + rows  # the two parity tables' headers end in "| ok |" too
    assert md in capsys.readouterr().out


def test_needs_cuda_without_dry_run(tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit):
        gpu_check.main(["--out", str(tmp_path)])
    assert "gpu_check needs a CUDA device, got 'cpu'; on CPU run it with --dry-run" in capsys.readouterr().err


def test_bad_time_budget(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--out", str(tmp_path), "--time-budget", "0"])
    assert "--time-budget 0.0: must be a positive number of seconds" in capsys.readouterr().err


def test_parity_flags_a_wrong_backend(monkeypatch) -> None:
    real = gpu_check.selective_scan

    def skewed(*args, backend, **kwargs):
        out = real(*args, backend=backend, **kwargs)
        return out * 1.01 if backend == "torch" else out

    monkeypatch.setattr(gpu_check, "selective_scan", skewed)
    (row,) = gpu_check.check_parity(["torch", "ref"], batch=1, dim=2, d_state=2, length=6, device="cpu", tol=1e-3)
    assert not row["ok"] and row["max_rel_err"]["out"] == pytest.approx(0.01 / 1.0, rel=0.05)


def test_recurrence_parity_flags_a_wrong_form(monkeypatch) -> None:
    real = bench.recurrence_call

    def skewed(kernel, form, ins):
        call = real(kernel, form, ins)
        return (lambda: tuple(t * 1.01 for t in call())) if form == "chunked" and kernel == "delta_rule" else call

    monkeypatch.setattr(bench, "recurrence_call", skewed)
    rows = gpu_check.check_recurrence_parity(["chunked", "reference"], 1, 2, 4, 9, device="cpu", tol=1e-3)
    assert [r["ok"] for r in rows] == [True, True, True, False, False]
    assert all(r["max_rel_err"]["out"] == pytest.approx(0.01, rel=0.05) for r in rows if not r["ok"])
    assert all(e < 1e-5 for r in rows if r["ok"] for e in r["max_rel_err"].values())


def test_guard_reports_budget_and_out_of_memory() -> None:
    assert gpu_check._guarded(lambda: {"x": 1}, deadline=0.0, device="cpu") == {"status": "skipped: time budget"}

    def oom():
        raise MemoryError("no room for 64k tokens")

    assert gpu_check._guarded(oom, deadline=float("inf"), device="cpu") == {"status": "oom: no room for 64k tokens"}
    assert gpu_check._guarded(lambda: {"x": 1}, deadline=float("inf"), device="cpu") == {"status": "ok", "x": 1}
