"""Hybrid stacks (ModelConfig.layers) through `seqmix fit` YAML and options, checkpoints and `seqmix evaluate`."""

import csv
import json

import pytest
import torch
import yaml

from seqmix import archs
from seqmix.train.cli import cli
from seqmix.train.module import LMTask
from seqmix.train.tools import evaluate

from .test_cli import CONFIGS, MIXER_CONFIGS, MQAR, assert_fit_fails_in_one_line, run_main

HYBRID = str(CONFIGS / "mixers" / "hybrid.yaml")


def test_the_hybrid_yaml_builds_its_pattern_at_the_budget():
    built = cli(["-c", MQAR, "-c", HYBRID, "--wandb", "disabled"], run=False)
    mixers = built.model.model.mixers
    assert [type(m) for m in mixers] == [archs.Mamba] * 3 + [archs.Attention]
    assert mixers[3].n_heads == 2 and built.model.config.mixer_name == "mamba*3+attention"
    budget = built.model.hparams.param_budget
    assert abs(built.model.param_counts["non_embedding"] - budget) <= 0.02 * budget
    layers = built.model.hparams.model["layers"]  # plain data, as the checkpoint stores it
    assert layers[:3] == ["mamba"] * 3 and layers[3]["class_path"] == "seqmix.archs.attention.Attention"


def test_layers_on_the_command_line_and_print_config(capsys):
    args = ["fit", "-c", MQAR, "--model.model.n_layers", "4", "--model.model.layers", "[linear_attention, mamba]"]
    code, out, err = run_main([*args, "--print_config"], capsys)
    assert code == 0, err
    assert yaml.safe_load(out)["model"]["model"]["layers"] == ["linear_attention", "mamba"]
    built = cli(args[1:] + ["--wandb", "disabled"], run=False)
    assert [m.name for m in built.model.model.mixers] == ["linear_attention", "mamba"] * 2


@pytest.mark.parametrize(
    ("args", "yaml_layers", "words"),
    [
        (["--model.model.layers", "[mamba, mambo]"], None, ["layers[1]: unknown mixer 'mambo'", "mamba"]),
        (["--model.model.layers", "[mamba, mamba, attention]"], None,
         ["layers has 3 entries", "does not divide n_layers=2"]),
        ([], [{"class_path": "seqmix.archs.Attention", "init_args": {"n_head": 2}}], ["n_head"]),
        (["-c", MIXER_CONFIGS["mamba"], "-c", HYBRID], None, ["seqmix.archs.mamba.Mamba", "layers are both given"]),
    ],
    ids=["unknown-mixer", "pattern-does-not-divide", "unknown-init-arg", "mixer-and-layers"],
)
def test_bad_patterns_are_one_line_errors(args, yaml_layers, words, tmp_path, capsys):
    if yaml_layers is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"model": {"model": {"layers": yaml_layers}}}))
        args = ["-c", str(path)]
    assert_fit_fails_in_one_line(args, words, tmp_path, capsys)


@pytest.mark.slow
def test_fit_a_hybrid_then_reload_and_evaluate_its_checkpoint(tmp_path, capsys):
    tiny = ["--model.param_budget", "null", "--model.model.d_model", "16", "--data.init_args.num_train_examples", "64",
            "--data.init_args.num_val_examples", "32", "--data.init_args.batch_size", "16"]
    steps = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
             "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]
    code, _, err = run_main(["fit", "-c", MQAR, "-c", HYBRID, "--wandb", "disabled", *tiny, *steps], capsys)
    assert code == 0, err
    (run_dir,) = tmp_path.glob("mqar-*/version_0")
    assert run_dir.parent.name == "mqar-mamba*3+attention"
    final = json.loads((run_dir / "final_metrics.json").read_text())
    assert final["model"]["mixer_name"] == "mamba*3+attention" and final["global_step"] == 2
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]  # plain data: no pickled factories
    assert hparams["model"]["layers"][3] == {"class_path": "seqmix.archs.attention.Attention",
                                             "init_args": {"n_heads": 2, "n_kv_heads": None, "position": "rope",
                                                           "rope_base": 10000.0, "impl": "sdpa"}}
    restored = LMTask.load_from_checkpoint(ckpt)
    assert [m.name for m in restored.model.mixers] == ["mamba"] * 3 + ["attention"]

    out = tmp_path / "eval"
    assert evaluate.main(["--ckpt", str(ckpt), "--lengths", "32", "48", "--num-examples", "8", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "mqar" and summary["runs"][0]["mixer"] == "mamba*3+attention"
    assert summary["runs"][0]["params_non_embedding"] == restored.param_counts["non_embedding"]
    rows = list(csv.DictReader(open(out / "extrapolation.csv")))
    assert [(r["model"], int(r["length"])) for r in rows] == [("mamba*3+attention", 32), ("mamba*3+attention", 48)]
