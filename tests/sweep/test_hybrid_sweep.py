"""A sweep over layer patterns: W&B renders each list value with str(), and seqmix fit reads it as ModelConfig.layers."""

from seqmix.train.cli import cli
from seqmix.train.tools.sweep import parse_spec, plan_runs, render_command
from seqmix.train.tools.sweep.plan import check_seqmix_arguments, seqmix_arguments

ATTENTION = {"class_path": "seqmix.archs.Attention", "init_args": {"n_heads": 2}}


def spec(patterns):
    return parse_spec({
        "program": "train/cli.py", "method": "grid",
        "parameters": {"model.model.layers": {"values": patterns}},
        "command": ["${env}", "seqmix", "fit", "-c", "experiments/configs/mqar.yaml", "--model.model.n_layers=4",
                    "--model.param_budget=null", "--model.model.d_model=16", "${args}"],
    })


def test_each_pattern_reaches_seqmix_fit():
    s = spec([["mamba", "attention"], ["mamba", "mamba", "mamba", ATTENTION]])
    runs = plan_runs(s)
    check_seqmix_arguments(s, runs)  # parsed by seqmix's own parser
    built = []
    for run in runs:
        args = seqmix_arguments(render_command(s, run))
        built.append(cli([*args[1:], "--wandb", "disabled"], run=False).model)
    assert sorted(m.config.mixer_name for m in built) == ["mamba*3+attention", "mamba+attention"]
    hybrid = next(m for m in built if m.config.mixer_name == "mamba*3+attention")
    assert hybrid.model.mixers[3].n_heads == 2
