"""`seqmix bench` and `seqmix compare` take the long-context mixers by name: sliding window, grouped-query attention."""

import json

import pytest

from seqmix.train.tools import compare
from seqmix.train.tools.bench import read_csv
from seqmix.train.tools.bench.cli import main


@pytest.mark.slow
def test_bench_measures_sliding_window_and_gqa_in_every_mode(tmp_path):
    out = tmp_path / "run"
    mixers = ["attention", "attention:n_heads=4,n_kv_heads=1", "sliding_window:window=8,n_heads=4"]
    argv = ["--mixers", *mixers, "--d-model", "16", "--vocab-size", "32", "--seq-lens", "16", "64", "--n-layers", "2",
            "--repeats", "1", "--decode-steps", "2", "--time-budget", "60", "--threads", "1",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    rows = read_csv(out / "bench.csv")
    assert {(r["mixer"], r["mode"], r["seq_len"]) for r in rows if r["status"] == "ok"} == {
        (m, mode, n) for m in mixers for mode in ("train", "prefill", "decode") for n in (16, 64)}
    state = {(r["mixer"], r["seq_len"]): r["state_bytes_measured"] for r in rows if r["mode"] == "decode"}
    assert all(r["state_bytes"] == r["state_bytes_measured"] for r in rows if r["mode"] != "train")
    window = "sliding_window:window=8,n_heads=4"
    assert state[(window, 16)] == state[(window, 64)]  # a ring buffer of W slots, whatever the length
    for n in (16, 64):  # 4 query heads share 1 key/value head: a 4x smaller cache (less 2 layers' int64 position)
        assert state[("attention", n)] - 16 == 4 * (state[("attention:n_heads=4,n_kv_heads=1", n)] - 16) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == set(mixers)


def test_compare_takes_sliding_window_and_gives_it_heads(tmp_path):
    args = compare.build_parser().parse_args(["--mixers", "sliding_window", "attention", "--out", str(tmp_path)])
    compare._check(args)  # raises for an unknown mixer
    assert compare.mixer_args("sliding_window", args) == {"n_heads": 2}
