"""Every shipped reproduction's `--preset tiny` runs end to end through the real `seqmix fit` / `sweep` / `evaluate`."""

import csv
import json
from pathlib import Path

import pytest

from seqmix.train.tools.reproduce import cli
from seqmix.train.tools.reproduce.spec import available, load

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("folder", available(cli.PACKAGE_ROOT), ids=lambda p: p.name)
def test_the_tiny_preset_runs_and_writes_results_and_the_comparison(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # from anywhere: the steps run in the repository holding the reproductions
    out = tmp_path / "out"
    args = [folder.name, "--preset", "tiny", "--out", str(out), "--root", str(REPO / "experiments" / "reproduce")]
    assert cli.main(args) == 0, capsys.readouterr().err[-3000:]
    repro = load(folder, "tiny")
    state = json.loads((out / "steps.json").read_text())
    assert [s.id for s in repro.steps] == list(state["steps"]) and all(s["status"] == "ok" for s in state["steps"].values())
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["step"] for r in rows} == {r.step for r in repro.results}
    comparison = (out / "comparison.md").read_text()
    assert all(c.what in comparison for c in repro.claims) and "smoke run" in comparison
    for plot in repro.plots:
        assert (out / plot.file).stat().st_size > 0
    assert cli.main(args) == 0  # a rerun repeats nothing
    assert capsys.readouterr().out.count("done earlier, skipped") >= len(repro.steps)
