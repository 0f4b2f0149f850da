"""A sweep whose command is `seqmix fit`: parameter names and values seqmix fit would refuse fail before any run."""

import sys
from pathlib import Path

import yaml

from seqmix.train.tools.sweep import run_cli as sweep_cli
from seqmix.train.tools.sweep.plan import seqmix_arguments

MQAR = str(Path(__file__).resolve().parents[2] / "experiments" / "configs" / "mqar.yaml")


def test_seqmix_arguments_finds_the_trainer_command():
    assert seqmix_arguments(["/usr/bin/env", "seqmix", "fit", "-c", "x.yaml"]) == ["fit", "-c", "x.yaml"]
    assert seqmix_arguments([sys.executable, "-m", "seqmix.train.cli", "test", "--a=1"]) == ["test", "--a=1"]
    assert seqmix_arguments(["python", "train/cli.py", "fit"]) == ["fit"]
    assert seqmix_arguments(["python", "stub.py", "--a=1"]) is None
    assert seqmix_arguments(["seqmix", "bench", "--quick"]) is None


def test_a_sweep_with_parameters_seqmix_fit_does_not_know_fails_before_any_run(tmp_path, capsys):
    sweep = tmp_path / "typo.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "typo", "method": "grid",
        "parameters": {"model.model.mixer": {"values": ["attention", "mamba"]}, "model.lr": {"values": [0.1, "fast"]}},
        "command": ["${env}", "seqmix", "fit", "-c", MQAR, "${args}"],
    }))
    out = tmp_path / "out"
    assert sweep_cli([str(sweep), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqmix sweep: error: run ") and "model.lr=fast" in err and 'Parser key "model.lr"' in err
    assert not out.exists()
    raw = yaml.safe_load(sweep.read_text())
    raw["parameters"] = {"model.learnig_rate": {"values": [0.1]}}
    sweep.write_text(yaml.safe_dump(raw))
    assert sweep_cli([str(sweep), "--out", str(out), "--dry-run"]) == 2
    assert "unrecognized arguments: --model.learnig_rate=0.1" in capsys.readouterr().err and not out.exists()
