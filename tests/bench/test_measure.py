"""Measuring real (tiny) models: every mode times, decode state bytes match the tensors the state holds."""

import pytest
import torch

from seqmix.archs import MIXERS, LanguageModel, ModelConfig
from seqmix.train.tools.bench.config import parse_mixer
from seqmix.train.tools.bench.measure import (
    Point,
    Probe,
    measure_point,
    state_tensor_bytes,
    time_calls,
    time_stats,
)
from seqmix.train.tools.bench.peak import matmul_flops_per_s

ARMS = ["attention", "attention_explicit", *sorted(set(MIXERS) - {"attention"}), "mamba+attention_explicit"]


def tiny_point(label, mode, seq_len=32, **kw):
    spec = parse_mixer(label)
    config = spec.model_config(d_model=16, n_layers=2, vocab_size=32)
    return Point(label, config, mode, seq_len, batch=2, **{"repeats": 2, "warmup": 1, "decode_steps": 3, **kw})


@pytest.mark.parametrize("label", ARMS)
def test_every_mode_times_and_counts_state(label):
    train = measure_point(tiny_point(label, "train"), Probe())
    assert len(train["times"]) == 2 and all(t > 0 for t in train["times"]) and "state_bytes" not in train
    assert len(train["cpu_times"]) == 2
    for mode, samples in (("prefill", 2), ("decode", 2 * 3)):  # decode: every step of every repeat is a sample
        out = measure_point(tiny_point(label, mode), Probe())
        assert len(out["times"]) == len(out["cpu_times"]) == samples and all(t > 0 for t in out["times"])
        assert out["state_bytes"] == out["state_bytes_measured"] > 0


def test_decode_state_bytes_follow_context_for_attention_only():
    grow = [measure_point(tiny_point("attention", "decode", n), Probe())["state_bytes_measured"] for n in (16, 64)]
    flat = [measure_point(tiny_point("linear_attention", "decode", n), Probe())["state_bytes_measured"] for n in (16, 64)]
    assert grow[1] - 16 == 4 * (grow[0] - 16)  # K and V grow with L; each layer's position counter is 8 bytes
    assert flat[0] == flat[1]


def test_state_helpers_count_and_copy():
    model = LanguageModel(ModelConfig(mixer="attention", d_model=16, n_layers=2, vocab_size=32))
    _, states = model.prefill(torch.randint(32, (1, 10)))
    assert state_tensor_bytes(states) == model.state_bytes(10, 1)
    copy = model.clone_states(states)
    copy[0]["k"].add_(1.0)
    assert not torch.equal(copy[0]["k"], states[0]["k"])


def test_time_budget_cuts_repeats_short():
    out = measure_point(tiny_point("linear_attention", "train", repeats=1000, time_budget_s=0.5), Probe())
    assert 1 <= len(out["times"]) < 1000


def test_time_stats():
    s = time_stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s["time_median_s"], s["time_q25_s"], s["time_q75_s"], s["time_min_s"], s["time_max_s"]) == (3, 2, 4, 1, 5)
    assert time_stats([2.0])["time_q25_s"] == 2.0


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown mode 'generate'"):
        measure_point(tiny_point("attention", "generate"), Probe())


def test_parse_mixer_forms():
    assert parse_mixer("attention_explicit").args == {"impl": "explicit"}
    spec = parse_mixer("mamba:d_state=8,scan_backend=ref")
    assert (spec.label, spec.name) == ("mamba:d_state=8,scan_backend=ref", "mamba")
    assert spec.args == {"d_state": 8, "scan_backend": "ref"}


def test_matmul_peak_is_measured():
    flops = matmul_flops_per_s(n=256, repeats=2)
    assert 1e8 < flops < 1e14


def test_min_time_keeps_sampling_cheap_calls():
    wall, cpu = time_calls(lambda: None, "cpu", warmup=0, repeats=3, deadline=float("inf"), min_time=0.05)
    assert len(wall) > 3 and len(cpu) == len(wall)
    wall, _ = time_calls(lambda: None, "cpu", warmup=0, repeats=3, deadline=float("inf"))
    assert len(wall) == 3
