"""Sweep file -> run list: validation errors, grid order, seeded random search, run ids, W&B's argument rendering."""

import hashlib
import json
import math
import sys
from pathlib import Path

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from seqmix.train.tools.sweep.plan import ROOT_DIR_FLAG, arg_forms, grid_runs, plan_runs, random_runs, render_command, run_id
from seqmix.train.tools.sweep.spec import DISTRIBUTIONS, SweepSpecError, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]


def spec(params: dict, method: str = "grid", **extra):
    return parse_spec({"program": "p.py", "method": method, "parameters": params, **extra})


# -- validation --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, needle", [
    ({"method": "grid", "parameters": {"a": {"values": [1]}}, "paramters": {}}, "'paramters'"),
    ({"method": "bayes", "parameters": {"a": {"values": [1]}}}, "W&B server"),
    ({"method": "custom", "parameters": {"a": {"values": [1]}}}, "W&B server"),
    ({"method": "hyperband", "parameters": {"a": {"values": [1]}}}, "'hyperband'"),
    ({"parameters": {"a": {"values": [1]}}}, "method must be one of"),
    ({"method": "grid"}, "'parameters'"),
    ({"method": "grid", "parameters": {}}, "non-empty mapping"),
    ({"method": "grid", "parameters": {"lr": {"valeus": [1]}}}, "'lr'"),
    ({"method": "random", "parameters": {"lr": {"min": 0.1, "max": 1, "step": 2}}}, "'step'"),
    ({"method": "random", "parameters": {"lr": {"distribution": "log_uniform_value", "min": 1, "max": 2}}},
     "unknown distribution 'log_uniform_value'"),
    ({"method": "random", "parameters": {"lr": {"distribution": "log_uniform_values", "min": 0, "max": 2}}}, "min > 0"),
    ({"method": "random", "parameters": {"lr": {"min": 2.0, "max": 1.0}}}, "greater than max"),
    ({"method": "random", "parameters": {"lr": {"distribution": "int_uniform", "min": 1.5, "max": 3}}}, "integer"),
    ({"method": "random", "parameters": {"lr": {"distribution": "q_uniform", "min": 0, "max": 3, "q": 0}}}, "q must be > 0"),
    ({"method": "random", "parameters": {"c": {"values": [1, 2], "probabilities": [0.5, 0.6]}}}, "summing to 1"),
    ({"method": "grid", "parameters": {"lr": {"distribution": "uniform", "min": 0.1, "max": 1.0}}}, "cannot be enumerated"),
    ({"method": "grid", "parameters": {"lr": {"values": []}}}, "non-empty list"),
    ({"method": "grid", "parameters": {"lr": 0.1}}, "must be a mapping"),
    ({"method": "grid", "parameters": {"a": {"values": [1]}}, "command": ["python", "${program}"]}, "no `program`"),
    ({"method": "grid", "program": "p.py", "parameters": {"a": {"values": [1]}}, "metric": {"name": "x", "goal": "up"}},
     "metric.goal"),
    ({"method": "grid", "program": "p.py", "parameters": {"a": {"values": [1]}}, "run_cap": 0}, "run_cap"),
])
def test_bad_sweep_files_are_rejected_with_the_offending_name(raw, needle):
    with pytest.raises(SweepSpecError) as e:
        parse_spec(raw)
    assert needle in str(e.value)


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("method: grid\nparameters:\n  a: {values: [1, 2\n")
    with pytest.raises(SweepSpecError) as e:
        load_spec(f)
    assert "bad.yaml" in str(e.value) and "not valid YAML at line" in str(e.value)


def test_every_w_and_b_distribution_is_accepted_and_samples_in_range():
    configs = {
        "constant": {"value": 3}, "categorical": {"values": [1, 2]},
        "categorical_w_probabilities": {"values": ["a", "b"], "probabilities": [0.0, 1.0]},
        "int_uniform": {"min": 2, "max": 4}, "uniform": {"min": 0.5, "max": 1.5},
        "q_uniform": {"min": 0, "max": 64, "q": 8}, "log_uniform": {"min": -3.0, "max": 0.0},
        "log_uniform_values": {"min": 1e-4, "max": 1e-2}, "inv_log_uniform": {"min": 0.0, "max": 2.0},
        "inv_log_uniform_values": {"min": 0.1, "max": 10.0}, "q_log_uniform": {"min": 0.0, "max": 5.0, "q": 2},
        "q_log_uniform_values": {"min": 1.0, "max": 1000.0, "q": 10}, "normal": {"mu": 1.0, "sigma": 0.1},
        "q_normal": {"mu": 10.0, "sigma": 2.0, "q": 1}, "log_normal": {"mu": 0.0, "sigma": 0.5},
        "q_log_normal": {"q": 0.5}, "beta": {"a": 2.0, "b": 5.0}, "q_beta": {"a": 2.0, "b": 2.0, "q": 0.25},
    }
    assert set(configs) == set(DISTRIBUTIONS)
    s = spec({k: {"distribution": k, **v} for k, v in configs.items()}, method="random")
    runs = random_runs(s, 200, seed=1)
    for r in runs:
        v = r.flat
        assert v["constant"] == 3 and v["categorical"] in (1, 2) and v["categorical_w_probabilities"] == "b"
        assert type(v["int_uniform"]) is int and 2 <= v["int_uniform"] <= 4
        assert 0.5 <= v["uniform"] <= 1.5
        assert type(v["q_uniform"]) is int and v["q_uniform"] % 8 == 0 and 0 <= v["q_uniform"] <= 64
        assert math.exp(-3) <= v["log_uniform"] <= 1.0
        assert 1e-4 <= v["log_uniform_values"] <= 1e-2
        assert math.exp(-2) <= v["inv_log_uniform"] <= 1.0
        assert 0.1 <= v["inv_log_uniform_values"] <= 10.0
        assert type(v["q_log_uniform_values"]) is int and v["q_log_uniform_values"] % 10 == 0
        assert type(v["q_log_normal"]) is float and (v["q_log_normal"] / 0.5).is_integer() and v["q_log_normal"] >= 0
        assert 0 <= v["beta"] <= 1 and (v["q_beta"] / 0.25).is_integer()
    # min/max both ints means int_uniform, as in W&B; a float bound means uniform
    assert spec({"n": {"min": 1, "max": 3}}).params[0].distribution == "int_uniform"
    assert spec({"n": {"min": 1, "max": 3.0}}, method="random").params[0].distribution == "uniform"


# -- run lists ---------------------------------------------------------------------------------------------------------

def test_grid_is_the_full_product_in_a_stable_order():
    params = {"b.lr": {"values": [0.1, 0.01]}, "a.mixer": {"values": ["attention", "mamba", "linear_attention"]},
              "c": {"value": 7}, "d": {"min": 1, "max": 2}}
    runs = grid_runs(spec(params))
    assert len(runs) == 2 * 3 * 2
    # parameters sorted by name, the last one varying fastest (W&B's grid order)
    assert [tuple(r.flat.values()) for r in runs[:3]] == [("attention", 0.1, 7, 1), ("attention", 0.1, 7, 2),
                                                          ("attention", 0.01, 7, 1)]
    assert list(runs[0].flat) == ["a.mixer", "b.lr", "c", "d"]
    # YAML key order does not change the list
    reordered = dict(reversed(list(params.items())))
    assert [r.run_id for r in grid_runs(spec(reordered))] == [r.run_id for r in runs]
    assert len({r.run_id for r in runs}) == len(runs)


def test_grid_drops_duplicate_values_and_honours_the_run_limit():
    s = spec({"a": {"values": [1, 1, 2]}, "b": {"values": ["x"]}}, run_cap=5)
    assert [r.flat["a"] for r in plan_runs(s)] == [1, 2]
    s = spec({"a": {"values": list(range(10))}}, run_cap=4)
    assert [r.flat["a"] for r in plan_runs(s)] == [0, 1, 2, 3]
    assert [r.flat["a"] for r in plan_runs(s, max_runs=2)] == [0, 1]  # --max-runs overrides run_cap


def test_grid_enumerates_int_and_q_uniform_like_w_and_b():
    s = spec({"n": {"min": 2, "max": 4}, "q": {"distribution": "q_uniform", "min": 0, "max": 32, "q": 8}})
    assert [(r.flat["n"], r.flat["q"]) for r in grid_runs(s)][:5] == [(2, 0), (2, 8), (2, 16), (2, 24), (3, 0)]


def test_random_search_is_seeded_and_extends_by_prefix():
    s = spec({"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
              "mixer": {"values": ["attention", "mamba"]}}, method="random")
    a, b = plan_runs(s, max_runs=6, seed=3), plan_runs(s, max_runs=6, seed=3)
    assert [r.run_id for r in a] == [r.run_id for r in b] and len(a) == 6
    assert [r.run_id for r in plan_runs(s, max_runs=9, seed=3)][:6] == [r.run_id for r in a]
    assert [r.run_id for r in plan_runs(s, max_runs=6, seed=4)] != [r.run_id for r in a]
    with pytest.raises(SweepSpecError, match="--max-runs"):
        plan_runs(s)


def test_random_search_over_a_small_discrete_space_yields_each_configuration_once():
    s = spec({"a": {"values": [1, 2, 3]}, "b": {"values": [True, False]}}, method="random")
    runs = plan_runs(s, max_runs=50, seed=0)
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6


def test_run_id_is_a_hash_of_the_parameters_only():
    args = {"model.lr": 0.001, "model.model.mixer": "mamba"}
    expect = hashlib.sha256(json.dumps(args, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    assert run_id(args) == expect == run_id(dict(reversed(list(args.items()))))
    assert run_id({"a": 1}) != run_id({"a": 1.0}) != run_id({"a": "1"})
    # the same parameters in another sweep file (other command, other name) keep their id
    s1 = spec({"model.lr": {"values": [0.001]}, "model.model.mixer": {"value": "mamba"}}, name="one")
    s2 = spec({"model.model.mixer": {"values": ["mamba"]}, "model.lr": {"value": 0.001}}, method="random", name="two",
              command=["python", "-m", "x", "${args}"])
    assert grid_runs(s1)[0].run_id == plan_runs(s2, max_runs=1)[0].run_id == expect


# -- command rendering -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    {"model.lr": 0.0001, "model.model.mixer": "mamba", "data.seq_len": 64},
    {"small": 1e-05, "flag": True, "off": False, "none": None, "lst": [1, 2], "nested": {"a": 1, "b": "x"}, "s": "1e-3"},
])
def test_arguments_render_exactly_as_the_w_and_b_agent_renders_them(args):
    theirs = create_sweep_command_args({"args": {k: {"value": v} for k, v in args.items()}})
    ours = arg_forms(args)
    for macro, rendered in ours.items():
        assert rendered == theirs[macro], macro


def test_command_macros_and_the_run_directory_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQMIX_TEST_CFG", "exp.yaml")
    s = spec({"model.lr": {"values": [0.5]}, "x": {"value": True}},
             command=["${env}", "${interpreter}", "-m", "seqmix.train.cli", "fit", "-c", "${envvar:SEQMIX_TEST_CFG}",
                      "${args}"])
    run = grid_runs(s)[0]
    argv = render_command(s, run, tmp_path)
    assert argv[1:] == [sys.executable, "-m", "seqmix.train.cli", "fit", "-c", "exp.yaml", "--model.lr=0.5", "--x=True",
                        f"{ROOT_DIR_FLAG}={tmp_path}"]
    assert Path(argv[0]).name == "env"
    # no `command`: W&B's default `${env} ${interpreter} ${program} ${args}`
    assert render_command(spec({"a": {"value": 1}}), grid_runs(spec({"a": {"value": 1}}))[0])[1:] == [
        sys.executable, "p.py", "--a=1"]


def test_unknown_macro_or_missing_env_var_is_an_error(monkeypatch):
    monkeypatch.delenv("SEQMIX_NOPE", raising=False)
    for cmd, needle in [(["${interpreter}", "${argz}"], "unknown macro '${argz}'"),
                        (["${interpreter}", "${envvar:SEQMIX_NOPE}"], "SEQMIX_NOPE")]:
        s = spec({"a": {"value": 1}}, command=cmd)
        with pytest.raises(SweepSpecError, match="command") as e:
            render_command(s, grid_runs(s)[0])
        assert needle in str(e.value)


# -- the checked-in sweep files ----------------------------------------------------------------------------------------

SWEEP_FILES = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))


def test_the_repository_ships_sweep_files():
    assert {f.stem for f in SWEEP_FILES} >= {"mqar", "lm_text"}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_checked_in_sweep_files_are_valid_for_w_and_b_and_for_the_local_runner(path):
    raw = yaml.safe_load(path.read_text())
    s = load_spec(path)
    assert raw["program"] and s.command[:3] == ("${env}", "seqmix", "fit") and s.command[-1] == "${args}"
    runs = plan_runs(s, max_runs=None if s.method == "grid" else 4)
    assert runs and len({r.run_id for r in runs}) == len(runs)
    mixers = {r.flat.get("model.model.mixer") for r in (grid_runs(s) if s.method == "grid" else runs)}
    assert mixers <= {"attention", "linear_attention", "mamba"}
    if s.method == "grid":
        assert mixers == {"attention", "linear_attention", "mamba"}
