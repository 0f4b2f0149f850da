"""The experiment notebooks run top to bottom on their checked-in inputs and save their figures."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "experiments" / "notebooks"


def execute(name: str, out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run a notebook with cwd at the repository root, figures into out_dir, W&B off; return it executed."""
    monkeypatch.setenv("SEQMIX_NOTEBOOK_OUT", str(out_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("SEQMIX_WANDB_RUNS", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=180, resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def text_output(nb: nbformat.NotebookNode) -> str:
    """Everything the cells printed or displayed as text/markdown."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/markdown", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", ["scaling_curves.ipynb", "recall_vs_size.ipynb"])
def test_checked_in_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    assert "tags" in nb.cells[1].metadata and "parameters" in nb.cells[1].metadata.tags


@pytest.mark.slow
def test_scaling_curves_runs_and_saves_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute("scaling_curves.ipynb", tmp_path, monkeypatch)
    for png in ("time.png", "cpu_time.png", "memory.png", "throughput.png"):
        assert (tmp_path / png).stat().st_size > 10_000, png
    text = text_output(nb)
    default = "experiments/bench/bench.csv" if (ROOT / "experiments/bench/bench.csv").is_file() else "bench_small.csv"
    assert default in text
    assert "| train | mamba |" in text and "| decode | mamba vs attention |" in text  # exponent and crossover tables
    assert "fitted log-log exponents" in text


@pytest.mark.slow
def test_recall_vs_size_runs_and_saves_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute("recall_vs_size.ipynb", tmp_path, monkeypatch)
    assert (tmp_path / "recall_vs_size.png").stat().st_size > 10_000
    text = text_output(nb)
    rows = [line for line in text.splitlines() if line.startswith(("| attention |", "| linear_attention |", "| mamba |"))]
    assert len(rows) == 6  # every run of the checked-in sweep: 3 mixers x 2 budgets
    assert os.path.getsize(NOTEBOOKS / "data" / "mqar_sweep_small.csv") < 20_000
