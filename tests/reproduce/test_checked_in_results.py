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
