"""A reproduction's README quotes only its checked-in results: every table is recomputed here from the CSVs under
experiments/reproduce/NAME/results/ and must appear in the README as written."""

import csv
from pathlib import Path

import pytest

from seqmix.train.tools.reproduce import cli
from seqmix.train.tools.reproduce.results import compare
from seqmix.train.tools.reproduce.spec import available, load

WITH_RESULTS = [f for f in available(cli.PACKAGE_ROOT) if (f / "results" / "results.csv").is_file()]
ICL = cli.PACKAGE_ROOT / "icl_regression"
CURVE_POINTS = (1, 2, 5, 10, 15, 20)


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def claims_table(folder: Path) -> str:
    """The claims, ours computed from results/results.csv by the reproduction's own rules (comparison.md's rows)."""
    rows = compare(load(folder, "full"), folder / "results")
    return "\n".join(f"| {r['what']} | {r['source']} | {r['paper']} | {r['ours']} | {r['agrees'] or '-'} | {r['rule']} |"
                     for r in rows)


def gd_table(rows: list[dict[str, str]]) -> str:
    """Every model, trained and untrained, against one GD step on the held-out tasks."""
    lines = ["| model | weights | MSE | GD's MSE | gap (mean squared) | gap / GD's MSE | sensitivity cosine |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        numbers = (float(r[k]) for k in ("mse", "mse_reference", "gap_mse", "gap_ratio", "sensitivity_cosine"))
        lines.append(f"| {r['model']} | {r['weights']} | " + " | ".join(f"{x:.4g}" for x in numbers) + " |")
    return "\n".join(lines)


def curve_table(rows: list[dict[str, str]]) -> str:
    """MSE at a few numbers of context points, a row per model and reference."""
    mse = {(r["model"], int(r["num_context"])): float(r["mse"]) for r in rows}
    lines = ["| model | " + " | ".join(f"N={n}" for n in CURVE_POINTS) + " |", "|---|" + "---|" * len(CURVE_POINTS)]
    for model in dict.fromkeys(r["model"] for r in rows):
        lines.append(f"| {model} | " + " | ".join(f"{mse[(model, n)]:.3g}" for n in CURVE_POINTS) + " |")
    return "\n".join(lines)


def test_icl_regression_has_checked_in_results():
    assert ICL in WITH_RESULTS


@pytest.mark.parametrize("folder", WITH_RESULTS, ids=lambda p: p.name)
def test_the_readme_claims_table_is_the_one_the_checked_in_results_give(folder):
    table = claims_table(folder)
    assert "not measured" not in table
    assert table in (folder / "README.md").read_text()
    assert table in (folder / "results" / "comparison.md").read_text()


def test_the_icl_readme_tables_are_recomputed_from_the_csvs():
    readme = (ICL / "README.md").read_text()
    gd, curve = read(ICL / "results" / "gd_comparison.csv"), read(ICL / "results" / "context_curve.csv")
    assert gd_table(gd) in readme
    assert curve_table(curve) in readme
    combined = read(ICL / "results" / "results.csv")  # what the claims read: the two CSVs' rows, tagged by step
    for rows, from_gd in ((gd, True), (curve, False)):
        mine = [{k: v for k, v in r.items() if k != "step" and v != ""} for r in combined if bool(r["weights"]) == from_gd]
        assert mine == [{k: v for k, v in r.items() if v != ""} for r in rows]


INDUCTION = cli.PACKAGE_ROOT / "induction" / "diagnostics"
INDUCTION_RUNS = {"mamba_scratch256": "Mamba, from scratch at 256", "mamba_64": "Mamba at 64",
                  "mamba_warm256": "Mamba at 256, from the 64-token weights",
                  "mamba_warm256_more": "the same, 2000 steps more at 256",
                  "attention_rope_scratch256": "attention (RoPE), from scratch at 256"}
INDUCTION_LENGTHS = (256, 1024, 4096, 16384)


def induction_runs_table() -> str:
    """Per diagnostic run: where it left the chance plateau, its last validation, accuracy at several lengths."""
    lines = ["| run | first check ≥ 0.5 (step) | last check: step, val acc | "
             + " | ".join(f"L={n}" for n in INDUCTION_LENGTHS) + " |", "|---|---|---|" + "---|" * len(INDUCTION_LENGTHS)]
    for run, label in INDUCTION_RUNS.items():
        val = read(INDUCTION / f"{run}_val.csv")
        left = next((r["step"] for r in val if float(r["val_acc"]) >= 0.5), "never")
        curve = INDUCTION / f"{run}_extrapolation.csv"
        acc = {int(r["length"]): float(r["accuracy"]) for r in read(curve)} if curve.is_file() else {}
        cells = " | ".join(f"{acc[n]:.3f}" if n in acc else "–" for n in INDUCTION_LENGTHS)
        lines.append(f"| {label} | {left} | {val[-1]['step']}, {float(val[-1]['val_acc']):.3f} | {cells} |")
    return "\n".join(lines)


def induction_depth_table(run: str) -> str:
    """Accuracy by the first trigger's depth (0: the start of the context) at each evaluated length."""
    rows = read(INDUCTION / f"{run}_heatmap.csv")
    depths = list(dict.fromkeys(float(r["depth"]) for r in rows))
    acc = {(int(r["length"]), float(r["depth"])): float(r["accuracy"]) for r in rows}
    lines = ["| length | " + " | ".join(f"depth {d:g}" for d in depths) + " |", "|---|" + "---|" * len(depths)]
    for n in dict.fromkeys(int(r["length"]) for r in rows):
        lines.append(f"| {n} | " + " | ".join(f"{acc[(n, d)]:.3f}" for d in depths) + " |")
    return "\n".join(lines)


def test_the_induction_diagnostics_tables_are_the_ones_the_checked_in_csvs_give():
    readme = (cli.PACKAGE_ROOT / "induction" / "README.md").read_text()
    assert induction_runs_table() in readme
    assert induction_depth_table("mamba_warm256") in readme
    assert induction_depth_table("mamba_warm256_more") in readme
