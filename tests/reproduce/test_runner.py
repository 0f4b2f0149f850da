"""The reproduction runner: finished steps are recorded and skipped, a killed run resumes, changed steps rerun."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seqmix.train.tools.reproduce.runner import ReproduceError, ReproductionRunner
from seqmix.train.tools.reproduce.spec import load

STUB = (sys.executable, str(Path(__file__).with_name("stub_seqmix.py")))
SPEC = """
name: demo
claim: a demo
source: nowhere
steps:
  - {id: train_a, fit: [--model.lr=0.1]}
  - {id: train_b, fit: [--model.lr=0.2]}
  - {id: curve, evaluate: [--ckpt, "{ckpt:train_a}", "{ckpt:train_b}"]}
  - {id: other, evaluate: [--ckpt, "{ckpt:train_b}"]}
results:
  - {step: curve, file: table.csv}
presets:
  full: {}
  tiny: {}
"""


def make(tmp_path: Path, spec: str = SPEC) -> Path:
    folder = tmp_path / "repros" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reproduce.yaml").write_text(textwrap.dedent(spec))
    return folder


def calls(log: Path) -> list[str]:
    """The step of every stub invocation, in order."""
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def run_in_subprocess(folder: Path, out: Path, log: Path, **env: str) -> int:
    """Run the reproduction in a child process (so a step can kill it), with the stub as `seqmix`."""
    code = (f"from pathlib import Path; from seqmix.train.tools.reproduce.runner import ReproductionRunner; "
            f"from seqmix.train.tools.reproduce.spec import load; "
            f"r = ReproductionRunner(load(Path({str(folder)!r}), 'full'), Path({str(out)!r}), program={STUB!r}); "
            f"r.acquire(); r.run()")
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "STUB_LOG": str(log), **env}).returncode


def test_a_killed_reproduction_resumes_without_repeating_finished_steps(tmp_path):
    folder, out, log = make(tmp_path), tmp_path / "out", tmp_path / "stub.log"
    assert run_in_subprocess(folder, out, log, STUB_KILL_AT="curve") == -9  # killed by its own step
    state = json.loads((out / "steps.json").read_text())
    assert {k: v["status"] for k, v in state["steps"].items()} == {"train_a": "ok", "train_b": "ok"}
    assert calls(log) == ["train_a", "train_b", "curve"]

    assert run_in_subprocess(folder, out, log) == 0
    assert calls(log) == ["train_a", "train_b", "curve", "curve", "other"]  # finished fits were not repeated
    state = json.loads((out / "steps.json").read_text())
    assert all(s["status"] == "ok" for s in state["steps"].values()) and len(state["steps"]) == 4

    assert run_in_subprocess(folder, out, log) == 0
    assert len(calls(log)) == 5  # everything done: nothing runs


def test_checkpoint_placeholders_resolve_to_the_fit_steps_last_checkpoint(tmp_path):
    folder, out, log = make(tmp_path), tmp_path / "out", tmp_path / "stub.log"
    os.environ["STUB_LOG"] = str(log)
    try:
        runner = ReproductionRunner(load(folder, "full"), out, program=STUB, echo=lambda _: None)
        runner.acquire()
        runner.run()
    finally:
        del os.environ["STUB_LOG"]
    curve = runner.state["steps"]["curve"]["command"]
    ckpts = curve[curve.index("--ckpt") + 1:curve.index("--ckpt") + 3]
    assert ckpts == [str(out / "steps" / s / s / "version_0" / "checkpoints" / "last.ckpt") for s in ("train_a", "train_b")]
    fit = runner.state["steps"]["train_a"]["command"]
    assert fit[len(STUB):len(STUB) + 1] == ["fit"] and "--ckpt_path=last" in fit  # a killed fit resumes its checkpoint
    assert runner.state["steps"]["curve"]["shown"].startswith("seqmix evaluate --ckpt ")


def test_a_changed_step_reruns_with_what_reads_it_and_nothing_else(tmp_path, monkeypatch):
    out, log = tmp_path / "out", tmp_path / "stub.log"
    monkeypatch.setenv("STUB_LOG", str(log))
    for spec in (SPEC, SPEC.replace("--model.lr=0.2", "--model.lr=0.3")):
        runner = ReproductionRunner(load(make(tmp_path, spec), "full"), out, program=STUB, echo=lambda _: None)
        runner.acquire()
        runner.run()
        runner.release()
    assert calls(log) == ["train_a", "train_b", "curve", "other", "train_b", "curve", "other"]


def test_a_failed_step_stops_the_run_is_recorded_and_reruns_next_time(tmp_path, monkeypatch):
    folder, out, log = make(tmp_path), tmp_path / "out", tmp_path / "stub.log"
    monkeypatch.setenv("STUB_LOG", str(log))
    monkeypatch.setenv("STUB_FAIL_AT", "train_b")
    runner = ReproductionRunner(load(folder, "full"), out, program=STUB, echo=lambda _: None)
    runner.acquire()
    with pytest.raises(ReproduceError, match="step train_b failed with exit code 3") as err:
        runner.run()
    assert "stub: failing as asked" in str(err.value)
    assert runner.state["steps"]["train_b"]["status"] == "failed" and "curve" not in runner.state["steps"]
    runner.release()
    monkeypatch.delenv("STUB_FAIL_AT")
    runner = ReproductionRunner(load(folder, "full"), out, program=STUB, echo=lambda _: None)
    runner.acquire()
    assert runner.run() == {"train_a": "skipped", "train_b": "ran", "curve": "ran", "other": "ran"}


def test_a_second_runner_on_the_same_folder_is_refused(tmp_path):
    folder, out = make(tmp_path), tmp_path / "out"
    first = ReproductionRunner(load(folder, "full"), out, program=STUB)
    first.acquire()
    with pytest.raises(ReproduceError, match="another `seqmix reproduce` is running"):
        ReproductionRunner(load(folder, "full"), out, program=STUB).acquire()
    first.release()


def test_a_folder_of_another_preset_is_refused(tmp_path):
    folder, out = make(tmp_path), tmp_path / "out"
    (out).mkdir()
    (out / "steps.json").write_text(json.dumps({"reproduction": "demo", "preset": "tiny", "steps": {}}))
    with pytest.raises(ReproduceError, match="holds reproduction 'demo' preset 'tiny', not 'demo' 'full'"):
        ReproductionRunner(load(folder, "full"), out, program=STUB).acquire()


def test_a_reader_of_a_step_that_reran_in_a_killed_run_is_not_taken_as_done(tmp_path, monkeypatch):
    folder, out, log = make(tmp_path), tmp_path / "out", tmp_path / "stub.log"
    assert run_in_subprocess(folder, out, log) == 0
    make(tmp_path, SPEC.replace("--model.lr=0.2", "--model.lr=0.3"))
    assert run_in_subprocess(folder, out, log, STUB_KILL_AT="curve") == -9  # train_b reran, then the run was killed
    assert run_in_subprocess(folder, out, log) == 0
    assert calls(log) == ["train_a", "train_b", "curve", "other", "train_b", "curve", "curve", "other"]
