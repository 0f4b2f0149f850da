"""The checked-in sweep files against the real `seqmix fit`: a tiny MQAR sweep trains all three mixers, and the first
run of every GPU-sized sweep is accepted by LightningCLI exactly as the W&B agent would render it."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seqmix.train.tools.sweep import run_cli
from seqmix.train.tools.sweep.plan import plan_runs, render_command
from seqmix.train.tools.sweep.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "experiments" / "sweeps"


@pytest.mark.slow
def test_tiny_mqar_sweep_trains_the_three_mixers_and_a_rerun_launches_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "seqmix.train.tools.sweep", str(SWEEPS / "mqar_tiny.yaml"), "--out", str(out),
                           "--workers", "3"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "results.csv", newline="") as f:
        rows = {r["model.model.mixer"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"attention", "linear_attention", "mamba"}
    for mixer, row in rows.items():
        assert row["status"] == "ok" and row["exit_code"] == "0", row
        assert 0.0 <= float(row["val/acc"]) <= 1.0 and math.isfinite(float(row["val/loss"]))
        assert abs(int(row["model/params_non_embedding"]) - 4000) <= 0.02 * 4000  # sized to --model.param_budget
        config = yaml.safe_load((out / row["config_path"]).read_text())  # LightningCLI's resolved config of the run
        assert config["model"]["model"]["mixer"] == mixer and config["trainer"]["max_steps"] == 8
        assert Path(config["trainer"]["default_root_dir"]) == out / "runs" / row["run_id"]

    monkeypatch.chdir(REPO)
    before = (out / "results.csv").read_text()
    assert run_cli([str(SWEEPS / "mqar_tiny.yaml"), "--out", str(out)]) == 0
    assert (out / "results.csv").read_text() == before


@pytest.mark.slow
def test_first_run_of_each_sweep_file_is_a_valid_seqmix_fit_command(tmp_path):
    procs = {}
    env = {**os.environ, "WANDB_MODE": "disabled", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for path in sorted(SWEEPS.glob("*.yaml")):
        spec = load_spec(path)
        run = plan_runs(spec, max_runs=1)[0]
        argv = render_command(spec, run, tmp_path / path.stem) + ["--print_config"]
        procs[path.name] = (run, subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                  env=env))
    for name, (run, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {stderr[-2000:]}"
        config = yaml.safe_load(stdout)
        for key, value in run.args.items():  # every swept value arrived where its dotted name points
            node = config
            for part in key.split("."):
                node = node[part] if part in node else node["init_args"][part]
            if isinstance(value, dict):
                assert {k: node["init_args"][k] if "init_args" in node else node[k] for k in value} == value, name
            else:
                assert node == value, (name, key)
