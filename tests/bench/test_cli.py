"""`seqmix bench` from the command line: a tiny real sweep, --replot, --quick, bad input."""

import json

import pytest

from seqmix.train.tools.bench import read_csv
from seqmix.train.tools.bench.cli import build_parser, config_from_args, main
from seqmix.train.tools.bench.config import QUICK


@pytest.mark.slow
def test_tiny_real_sweep_writes_csv_summary_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--mixers", "attention", "attention_explicit", "linear_attention", "mamba", "--d-model", "16",
            "--vocab-size", "32", "--seq-lens", "16", "32", "--repeats", "2", "--decode-steps", "2",
            "--time-budget", "60", "--threads", "1", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    rows = read_csv(out / "bench.csv")
    assert len(rows) == 4 * 3 * 2 and {r["status"] for r in rows} == {"ok"}
    assert {r["threads"] for r in rows} == {1} and all(r["cpu_model"] for r in rows)
    assert all(r["peak_flops_per_s"] > 0 and r["utilization"] > 0 for r in rows)
    for r in rows:
        if r["mode"] != "train":
            assert r["state_bytes"] == r["state_bytes_measured"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["seq_lens"] == [16, 32] and summary["command"].startswith("seqmix bench --mixers")
    assert summary["plots"] == ["time.png", "cpu_time.png", "memory.png"] and (out / "time.png").is_file()
    assert all(r["cpu_time_median_s"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert "fitted log-log exponents" in printed and "crossover" in printed
    assert main(argv) == 2  # the CSV exists: refuse to overwrite it
    assert "--overwrite" in capsys.readouterr().err


def test_replot_rebuilds_from_the_csv(tmp_path, capsys):
    header = "mixer,mixer_name,mixer_args,mode,seq_len,batch,status,time_per_seq_s,time_median_s,peak_mem_bytes,device"
    lines = [header]
    for n in (512, 1024, 2048):
        lines.append(f'attention,attention,{{}},train,{n},1,ok,{1e-8 * n * n},{1e-8 * n * n},{100 * n},cpu')
        lines.append(f'mamba,mamba,{{}},train,{n},1,ok,{1e-5 * n},{1e-5 * n},{50 * n},cpu')
    (tmp_path / "bench.csv").write_text("\n".join(lines) + "\n")
    assert main(["--replot", str(tmp_path / "bench.csv")]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["fits"]["train"]["attention"]["time"]["exponent"] == pytest.approx(2.0)
    assert summary["crossovers"]["train"]["mamba vs attention"]["length"] == pytest.approx(1000.0)
    assert (tmp_path / "memory.png").is_file()
    assert "L ≈ 1000" in capsys.readouterr().out


def test_quick_preset_yields_to_explicit_arguments():
    quick = config_from_args(build_parser().parse_args(["--quick", "--repeats", "7"]))
    assert quick.seq_lens == QUICK["seq_lens"] and quick.repeats == 7 and quick.time_budget_s == QUICK["time_budget_s"]
    width = config_from_args(build_parser().parse_args(["--quick", "--d-model", "48"]))
    assert width.d_model == 48 and width.params is None
    plain = config_from_args(build_parser().parse_args([]))
    assert plain.seq_lens == (1024, 2048, 4096, 8192, 16384) and plain.repeats == 5


def test_bad_input_exits_with_a_clear_message(tmp_path, capsys):
    assert main(["--mixers", "attention", "hyena", "--out", str(tmp_path)]) == 2
    assert "unknown mixer 'hyena'" in capsys.readouterr().err
    assert main(["--replot", str(tmp_path / "missing.csv")]) == 2
    assert "no such CSV" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--params", "1000", "--d-model", "64"])
