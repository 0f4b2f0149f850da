"""Hybrid layer patterns on the command line (`--mixers` of seqmix bench and seqmix compare): one parser for both."""

import json

import pytest

from seqmix.archs import Attention, Mamba, non_embedding_params
from seqmix.train.tools.bench import BenchConfig, parse_mixer, run_bench
from seqmix.train.tools.bench.cli import build_parser

from .test_sweep import ENV


def test_a_single_mixer_reads_as_before():
    spec = parse_mixer("mamba:d_state=8")
    assert (spec.label, spec.name, spec.args, spec.layers) == ("mamba:d_state=8", "mamba", {"d_state": 8}, None)
    assert spec.model_config(n_layers=2).mixer == "mamba" and spec.model_config(n_layers=2).layers is None


@pytest.mark.parametrize("text", ["mamba*3+attention:n_heads=2", "mamba×3+attention:n_heads=2",
                                  "mamba+mamba*2+attention:n_heads=2", "Mamba * 3+attention:n_heads=2"])
def test_a_pattern_lists_every_layer(text):
    spec = parse_mixer(text)
    assert spec.label == text and spec.name == "mamba*3+attention"
    assert spec.layers == (("mamba", {}),) * 3 + (("attention", {"n_heads": 2}),)
    config = spec.model_config(n_layers=8, d_model=32)
    assert config.mixer_name == "mamba*3+attention" and config.n_layers == 8
    built = [config.make_mixer(i) for i in range(8)]
    assert [type(m) for m in built] == ([Mamba] * 3 + [Attention]) * 2 and built[3].n_heads == 2


def test_aliases_options_and_numbers_with_a_plus_sign():
    spec = parse_mixer("mamba:dt_min=1e+3,d_state=4*2+attention_explicit")
    assert spec.layers == (("mamba", {"dt_min": 1000.0, "d_state": 4}),) * 2 + (("attention", {"impl": "explicit"}),)
    assert json.loads(json.dumps(spec.options)) == {"layers": [["mamba", {"dt_min": 1000.0, "d_state": 4}]] * 2
                                                    + [["attention", {"impl": "explicit"}]]}


def test_defaults_go_under_the_options_given():
    spec = parse_mixer("attention:n_heads=4+linear_attention+mamba")
    heads = {"attention": {"n_heads": 2}, "linear_attention": {"n_heads": 2}}
    config = spec.model_config(lambda name: heads.get(name, {}), n_layers=3, d_model=16)
    assert [getattr(config.make_mixer(i), "n_heads", None) for i in range(3)] == [4, 2, None]


@pytest.mark.parametrize(("text", "words"), [
    ("mamba*0+attention", "expected entries like name*N joined by '+', got 'mamba*0'"),
    ("mamba*2+hyena", "unknown mixer 'hyena'"),
    ("mamba*2+attention:heads", "expected name:key=value"),
])
def test_bad_patterns_are_one_line_errors(text, words):
    with pytest.raises(ValueError) as err:
        parse_mixer(text).model_config(n_layers=3)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_pattern_must_divide_the_layers():
    with pytest.raises(ValueError, match=r"layers has 4 entries, which does not divide n_layers=2"):
        BenchConfig(mixers=("mamba*3+attention",))
    assert BenchConfig(mixers=("mamba*3+attention",), n_layers=4).specs[0].name == "mamba*3+attention"


def test_bench_help_documents_the_syntax():
    assert "mamba*3+attention" in " ".join(build_parser().format_help().split())


def test_bench_sizes_and_measures_a_hybrid():
    config = BenchConfig(mixers=("mamba", "mamba*3+attention"), n_layers=4, params=30_000, seq_lens=(16,),
                         modes=("train", "decode"), repeats=1, warmup=0, decode_steps=2, isolate=False, threads=1)
    hybrid = config.model_config(config.specs[1])
    assert abs(non_embedding_params(hybrid) - 30_000) <= 600
    rows = {(r["mixer"], r["mode"]): r for r in run_bench(config, progress=False, env=ENV)}
    row = rows["mamba*3+attention", "decode"]
    assert row["status"] == "ok" and row["mixer_name"] == "mamba*3+attention" and row["n_layers"] == 4
    assert row["state_bytes"] == row["state_bytes_measured"] > 0  # analytic == what the states held
    assert row["params_non_embedding"] == non_embedding_params(hybrid)
    assert json.loads(row["mixer_args"])["layers"][3] == ["attention", {"impl": "sdpa"}]
