"""The sweep: one row per mixer x mode x length, failures recorded and later lengths skipped, nothing lost."""

import csv
import json
import time

import pytest
import torch

from seqmix.train.tools.bench import COLUMNS, STATUSES, BenchConfig, read_csv, run_bench, summarize
from seqmix.train.tools.bench.output import replot, write_outputs

ENV = {"device": "cpu", "device_name": "test cpu", "torch_version": torch.__version__, "threads": 1,
       "cpu_model": "test cpu", "peak_flops_per_s": 1e11}
LENGTHS = (256, 512, 1024, 2048)
EXPONENT = {"attention": 2.0, "attention_explicit": 2.0, "linear_attention": 1.0, "mamba": 1.0}


def fake_measure(point, probe):
    """Synthetic times: t = 1e-7 * L^a per sequence (a = 2 for attention, 1 otherwise), state bytes like the real ones."""
    probe.baseline()
    t = 1e-7 * point.seq_len ** EXPONENT[point.label] * point.batch
    out = {"times": [0.9 * t, t, 1.2 * t], "cpu_times": [0.5 * t] * 3}
    if point.mode != "train":
        state = 64 * point.seq_len if point.config.mixer == "attention" else 4096
        out["state_bytes"] = out["state_bytes_measured"] = state
    return out


def oom_for_explicit(point, probe):
    if point.label == "attention_explicit" and point.seq_len >= 1024:
        raise torch.OutOfMemoryError("DefaultCPUAllocator: not enough memory: you tried to allocate 4294967296 bytes")
    return fake_measure(point, probe)


def error_for_mamba_prefill(point, probe):
    if point.label == "mamba" and point.mode == "prefill" and point.seq_len == 512:
        raise RuntimeError("selective scan exploded")
    return fake_measure(point, probe)


def slow_mamba_train(point, probe):
    if point.label == "mamba" and point.mode == "train" and point.seq_len >= 512:
        time.sleep(60)
    return fake_measure(point, probe)


def interrupt_at_1024(point, probe):
    if point.seq_len == 1024:
        raise KeyboardInterrupt
    return fake_measure(point, probe)


def config(**kw):
    return BenchConfig(**{"d_model": 16, "seq_lens": LENGTHS, "isolate": False, **kw})


def by_key(rows):
    return {(r["mixer"], r["mode"], r["seq_len"]): r for r in rows}


def test_schema_one_row_per_mixer_mode_length(tmp_path):
    path = tmp_path / "bench.csv"
    rows = run_bench(config(), fake_measure, path, progress=False, env=ENV)
    assert len(rows) == 4 * 3 * 4
    assert set(by_key(rows)) == {(m, mode, n) for m in EXPONENT for mode in ("train", "prefill", "decode") for n in LENGTHS}
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == COLUMNS
    back = read_csv(path)
    assert len(back) == len(rows) and {r["status"] for r in back} == {"ok"}
    r = by_key(back)["attention", "train", 1024]
    assert isinstance(r["seq_len"], int) and r["time_median_s"] == pytest.approx(1e-7 * 1024**2)
    assert r["time_q25_s"] < r["time_median_s"] < r["time_q75_s"] and r["repeats"] == 3
    assert r["tokens"] == 1024 and r["tokens_per_s"] == pytest.approx(1024 / r["time_median_s"])
    assert r["cpu_time_median_s"] == pytest.approx(0.5 * r["time_median_s"])
    assert r["flops"] > 0 and r["utilization"] == pytest.approx(r["flops_per_s"] / 1e11)
    assert r["mem_kind"] == "cpu_peak_rss_over_baseline" and r["peak_mem_bytes"] is not None
    assert json.loads(r["mixer_args"]) == {"impl": "sdpa"} and r["mixer_name"] == "attention"
    assert json.loads(by_key(back)["attention_explicit", "train", 256]["mixer_args"]) == {"impl": "explicit"}
    d = by_key(back)["mamba", "decode", 512]
    assert d["tokens"] == 1 and d["state_bytes"] == d["state_bytes_measured"] == 4096
    assert by_key(back)["mamba", "train", 512]["state_bytes"] is None


def test_oom_is_recorded_and_longer_lengths_skipped(tmp_path):
    rows = run_bench(config(), oom_for_explicit, tmp_path / "b.csv", progress=False, env=ENV)
    rows = by_key(read_csv(tmp_path / "b.csv"))
    for mode in ("train", "prefill", "decode"):
        assert rows["attention_explicit", mode, 512]["status"] == "ok"
        oom = rows["attention_explicit", mode, 1024]
        assert oom["status"] == "oom" and "not enough memory" in oom["message"] and oom["time_median_s"] is None
        skipped = rows["attention_explicit", mode, 2048]
        assert skipped["status"] == "skipped_after_oom" and "L=1024" in skipped["message"]
        assert all(rows[m, mode, 2048]["status"] == "ok" for m in ("attention", "linear_attention", "mamba"))
    assert {r["status"] for r in rows.values()} <= set(STATUSES)


def test_error_is_recorded_without_skipping(tmp_path):
    rows = by_key(run_bench(config(), error_for_mamba_prefill, tmp_path / "b.csv", progress=False, env=ENV))
    assert rows["mamba", "prefill", 512]["status"] == "error"
    assert rows["mamba", "prefill", 512]["message"] == "RuntimeError: selective scan exploded"
    assert rows["mamba", "prefill", 1024]["status"] == "ok"


def test_timeout_in_an_isolated_worker_is_recorded_and_the_sweep_goes_on(tmp_path):
    cfg = config(isolate=True, time_budget_s=1.5, seq_lens=(256, 512, 1024), modes=("train",),
                 mixers=("linear_attention", "mamba"))
    t0 = time.perf_counter()
    run_bench(cfg, slow_mamba_train, tmp_path / "b.csv", progress=False, env=ENV)
    assert time.perf_counter() - t0 < 30
    rows = by_key(read_csv(tmp_path / "b.csv"))
    assert rows["mamba", "train", 256]["status"] == "ok"
    assert rows["mamba", "train", 512]["status"] == "timeout"
    assert rows["mamba", "train", 1024]["status"] == "skipped_after_timeout"
    assert [rows["linear_attention", "train", n]["status"] for n in (256, 512, 1024)] == ["ok"] * 3


def test_rows_measured_before_a_crash_are_on_disk(tmp_path):
    path = tmp_path / "b.csv"
    with pytest.raises(KeyboardInterrupt):
        run_bench(config(), interrupt_at_1024, path, progress=False, env=ENV)
    rows = read_csv(path)
    assert len(rows) == 4 * 3 * 2  # every point at 256 and 512
    assert {r["seq_len"] for r in rows} == {256, 512}


def test_summary_recovers_exponents_and_crossovers(tmp_path):
    rows = run_bench(config(), fake_measure, tmp_path / "bench.csv", progress=False, env=ENV)
    s = summarize(rows)
    for mode in ("train", "prefill", "decode"):
        for m, a in EXPONENT.items():
            assert s["fits"][mode][m]["time"]["exponent"] == pytest.approx(a, abs=0.02)
            assert s["fits"][mode][m]["cpu_time"]["exponent"] == pytest.approx(a, abs=0.02)
    assert s["decode"]["attention"]["cpu_latency_vs_shortest"][2048] == pytest.approx(64.0)
    # 1e-7 L^2 = 1e-7 L never crosses above L=1: linear is cheaper everywhere
    assert "already cheaper" in s["crossovers"]["train"]["mamba vs attention"]["status"]
    assert set(s["crossovers"]["train"]) == {f"{c} vs {r}" for c in ("linear_attention", "mamba")
                                             for r in ("attention", "attention_explicit")}
    dec = s["decode"]
    assert dec["attention"]["latency_ratio"] == pytest.approx((2048 / 256) ** 2)
    assert dec["mamba"]["latency_ratio"] == pytest.approx(8.0) and dec["mamba"]["state_bytes_agree"]
    assert s["fits"]["decode"]["attention"]["memory"]["exponent"] == pytest.approx(1.0)
    assert s["fits"]["decode"]["mamba"]["memory"]["exponent"] == pytest.approx(0.0)
    assert s["status_counts"] == {"ok": 48} and s["models"]["mamba"]["d_model"] == 16

    written = write_outputs(rows, tmp_path, {"config": {"note": "test"}})
    assert written["plots"] == ["time.png", "cpu_time.png", "memory.png"]
    assert all((tmp_path / name).stat().st_size > 0 for name in written["plots"])
    again = replot(tmp_path / "bench.csv")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["config"] == {"note": "test"}
    assert again["fits"] == json.loads(json.dumps(written["fits"]))


def test_tokens_per_batch_sets_the_batch():
    cfg = config(tokens_per_batch=2048, decode_batch=4)
    assert [cfg.batch_for("train", n) for n in LENGTHS] == [8, 4, 2, 1]
    assert cfg.batch_for("decode", 256) == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mixers": ("attention", "transformerxl")}, "unknown mixer 'transformerxl'; registered mixers"),
        ({"modes": ("train", "infer")}, "unknown modes"),
        ({"params": 100_000, "d_model": 64}, "not both"),
        ({"seq_lens": (0, 512)}, "seq_lens must be positive"),
        ({"dtype": "float64"}, "unknown dtype 'float64'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"mixers": ("mamba:d_state",)}, "expected name:key=value"),
    ],
)
def test_bad_config_is_rejected_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BenchConfig(**kwargs)


def test_fit_from_restricts_the_fitted_lengths():
    rows = run_bench(config(modes=("train",)), fake_measure, None, progress=False, env=ENV)
    for r in rows:  # bend the attention curve below 1024: only the long-L regime is quadratic
        if r["mixer"] == "attention" and r["seq_len"] < 1024:
            r["time_median_s"] = 1e-7 * 1024**2 * (r["seq_len"] / 1024)
    bent = summarize(rows)["fits"]["train"]["attention"]["time"]
    asymptotic = summarize(rows, fit_min_len=1024)["fits"]["train"]["attention"]["time"]
    assert bent["exponent"] < 1.9 and bent["n_points"] == 4
    assert asymptotic["exponent"] == pytest.approx(2.0) and asymptotic["n_points"] == 2


CALLS: dict = {}


def oom_on_second_call(point, probe):
    key = (point.label, point.mode, point.seq_len)
    CALLS[key] = CALLS.get(key, 0) + 1
    if key == ("mamba", "train", 512) and CALLS[key] == 2:
        raise MemoryError("out of memory in round 2")
    return fake_measure(point, probe)


def test_rounds_pool_repeats_and_keep_samples_when_a_later_round_fails(tmp_path):
    CALLS.clear()
    rows = by_key(run_bench(config(rounds=3, modes=("train",)), oom_on_second_call, tmp_path / "b.csv",
                            progress=False, env=ENV))
    assert len(read_csv(tmp_path / "b.csv")) == len(rows) == 4 * 4
    steady = rows["attention", "train", 1024]
    assert (steady["status"], steady["rounds"], steady["repeats"]) == ("ok", 3, 9)
    hit = rows["mamba", "train", 512]
    assert (hit["status"], hit["rounds"], hit["repeats"]) == ("ok", 1, 3)
    assert "round 2: oom (MemoryError: out of memory in round 2)" in hit["message"]
    assert CALLS["mamba", "train", 512] == 2  # not retried in round 3
    assert rows["mamba", "train", 1024]["rounds"] == 3  # longer lengths are not skipped for a later-round failure


def test_summary_on_min_times():
    rows = run_bench(config(modes=("decode",)), fake_measure, None, progress=False, env=ENV)
    by_median, by_min = summarize(rows)["decode"]["mamba"], summarize(rows, stat="min")["decode"]["mamba"]
    assert by_min["latency_s"][256] == pytest.approx(0.9 * by_median["latency_s"][256])
    with pytest.raises(ValueError, match="unknown time statistic 'mean'"):
        summarize(rows, stat="mean")
