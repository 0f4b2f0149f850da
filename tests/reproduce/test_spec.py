"""reproduce.yaml: presets applied as documented, bad files rejected in one line, claims measured and judged."""

import textwrap

import pytest

from seqmix.train.tools.reproduce import cli
from seqmix.train.tools.reproduce.results import compare, measure, write_rows
from seqmix.train.tools.reproduce.spec import SpecError, available, load

BASE = """
name: demo
claim: a demo
source: nowhere
steps:
  - {id: train, fit: [-c, a.yaml]}
  - {id: sweep_it, sweep: ["{root}/s.yaml"]}
  - {id: curve, evaluate: [--ckpt, "{ckpt:train}", --lengths, 8]}
presets:
  full: {}
  tiny:
    fit: [--trainer.max_steps=2]
    evaluate: [--num-examples, 4]
    steps:
      curve: {append: [--lengths, 4]}
      sweep_it: {replace: ["{root}/s_tiny.yaml"]}
"""


def write(tmp_path, text, name="demo"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "reproduce.yaml").write_text(textwrap.dedent(text))
    return folder


def test_presets_append_per_kind_then_per_step_and_replace(tmp_path):
    folder = write(tmp_path, BASE)
    full = {s.id: s.args for s in load(folder, "full").steps}
    tiny = {s.id: s.args for s in load(folder, "tiny").steps}
    assert full["train"] == ("-c", "a.yaml") and tiny["train"] == ("-c", "a.yaml", "--trainer.max_steps=2")
    assert tiny["curve"] == ("--ckpt", "{ckpt:train}", "--lengths", "8", "--num-examples", "4", "--lengths", "4")
    assert tiny["sweep_it"] == ("{root}/s_tiny.yaml",) and full["sweep_it"] == ("{root}/s.yaml",)


def test_a_preset_can_skip_steps_nothing_later_reads(tmp_path):
    folder = write(tmp_path, BASE.replace("  tiny:\n", "  tiny:\n    skip: [sweep_it]\n"))
    assert [s.id for s in load(folder, "tiny").steps] == ["train", "curve"]
    folder = write(tmp_path, BASE.replace("  tiny:\n", "  tiny:\n    skip: [train]\n"))
    with pytest.raises(SpecError, match=r"\{ckpt:train\} must name an earlier step"):
        load(folder, "tiny")


@pytest.mark.parametrize("change,message", [
    (("{ckpt:train}", "{ckpt:curve}"), r"\{ckpt:curve\} must name an earlier step; earlier: train, sweep_it"),
    (("{ckpt:train}", "{ckpt:sweep_it}"), r"\{ckpt:sweep_it\} names a sweep step; checkpoints come from fit steps"),
    (("id: curve", "id: train"), "id 'train' is used twice"),
    (("id: curve", "id: Curve"), "id must be lower_snake_case"),
    (("fit: [-c, a.yaml]", "fit: [-c, a.yaml], evaluate: []"), "must have exactly one of fit, sweep, evaluate"),
    (("  full: {}\n", ""), "presets must define at least tiny and full"),
    (("name: demo", "name: other"), "name 'other' must be the folder's name 'demo'"),
    (("claim: a demo", "claim: ''"), "claim must be a non-empty string"),
    (("fit: [-c, a.yaml]", "fit: [-c, '{out:x}']"), r"\{out\} takes no name"),
    (("  tiny:\n", "  tiny:\n    fits: []\n"), r"presets.tiny has unknown keys \['fits'\]"),
    (("fit: [-c, a.yaml]", "fit: -c a.yaml"), "must be a list of command-line arguments"),
])
def test_bad_files_are_rejected_in_one_line(tmp_path, change, message):
    folder = write(tmp_path, BASE.replace(*change))
    with pytest.raises(SpecError, match=message) as err:
        load(folder, "tiny")
    assert "\n" not in str(err.value)


def test_an_unknown_preset_names_the_valid_ones(tmp_path):
    with pytest.raises(SpecError, match="unknown preset 'huge' for demo; choose one of full, tiny"):
        load(write(tmp_path, BASE), "huge")


CLAIMS = BASE + """
claims:
  - {what: best m, source: T1, paper: 0.8, file: results.csv, where: {model: m}, column: accuracy, tolerance: 0.1}
  - {what: worst m, source: T1, paper: 0.8, file: results.csv, where: {model: m}, column: accuracy, reduce: min,
     tolerance: 0.1}
  - {what: n at 8, source: F2, paper: fails, file: results.csv, where: {model: n, length: 8}, column: accuracy,
     at_most: 0.5}
  - {what: z, source: F2, paper: 1.0, file: results.csv, where: {model: z}, column: accuracy, at_least: 0.9}
"""


def test_claims_are_measured_from_the_matching_rows_and_judged_by_their_rule(tmp_path):
    repro = load(write(tmp_path, CLAIMS), "full")
    out = tmp_path / "out"
    write_rows([{"model": "m", "length": 8, "accuracy": 0.25}, {"model": "m", "length": 16, "accuracy": 0.75},
                {"model": "n", "length": 8, "accuracy": 1.0}, {"model": "n", "length": 16, "accuracy": 0.0}],
               out / "results.csv")
    assert measure(repro.claims[0], out) == 0.75 and measure(repro.claims[1], out) == 0.25
    rows = compare(repro, out)
    assert [(r["ours"], r["agrees"]) for r in rows] == [(0.75, "yes"), (0.25, "no"), (1.0, "no"), ("not measured", "")]
    assert [r["rule"] for r in rows] == ["abs(ours - paper) <= 0.1", "abs(ours - paper) <= 0.1", "ours <= 0.5",
                                         "ours >= 0.9"]


@pytest.mark.parametrize("change,message", [
    ("tolerance: 0.1}\n  - {what: worst", "needs exactly one agreement rule"),
    ("paper: 0.8, file: results.csv, where: {model: m}, column: accuracy, tolerance",
     "a tolerance needs a numeric paper value"),
])
def test_bad_claims_are_rejected(tmp_path, change, message):
    text = CLAIMS
    if "agreement" in message:
        text = text.replace("tolerance: 0.1}\n  - {what: worst", "}\n  - {what: worst", 1)
    else:
        text = text.replace("paper: 0.8, file", "paper: high, file", 1)
    with pytest.raises(SpecError, match=message):
        load(write(tmp_path, text), "full")


SHIPPED = available(cli.PACKAGE_ROOT)


def test_the_reproductions_the_issue_asks_for_are_shipped():
    assert {p.name for p in SHIPPED} == {"induction", "selective_copying", "zoology_mqar", "state_tracking",
                                         "recall_vs_state", "needle", "icl_regression"}


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_reproduction_loads_in_every_preset_and_has_its_readme(folder):
    repro = load(folder, "full")
    for preset in repro.presets:
        assert load(folder, preset).steps
    readme = (folder / "README.md").read_text()
    assert repro.claim.split(" - ")[0][:40] in " ".join(readme.split()), "the README states the claim"
    assert "seqmix reproduce " + repro.name in readme and "--preset tiny" in readme
    for claim in repro.claims:
        assert claim.what in readme, f"the README lists the claim {claim.what!r} beside the paper's number"


def test_list_prints_every_reproduction_with_its_claim(capsys):
    assert cli.main(["--list", "--root", str(cli.PACKAGE_ROOT)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [p.name for p in SHIPPED]
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)


def test_an_unknown_reproduction_is_rejected_in_one_line(capsys):
    assert cli.main(["nope", "--root", str(cli.PACKAGE_ROOT)]) == 2
    err = capsys.readouterr().err.strip()
    names = ", ".join(p.name for p in SHIPPED)
    assert err == f"seqmix reproduce: error: unknown reproduction 'nope'; choose one of {names}" and "\n" not in err


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path, capsys):
    assert cli.main(["induction", "--preset", "tiny", "--dry-run", "--out", str(tmp_path / "o"),
                     "--root", str(cli.PACKAGE_ROOT)]) == 0
    out = capsys.readouterr().out
    assert "curve: seqmix evaluate --ckpt <newest last.ckpt of mamba>" in out and "mamba: seqmix fit " in out
    assert not (tmp_path / "o").exists()


def test_append_adds_arguments_to_every_step_of_a_kind(tmp_path, capsys):
    assert cli.main(["induction", "--preset", "tiny", "--dry-run", "--append", "fit: --trainer.max_steps=7 --model.lr=0.5",
                     "--root", str(cli.PACKAGE_ROOT)]) == 0
    lines = capsys.readouterr().out.splitlines()
    fits = [line for line in lines if " seqmix fit " in line]
    tiny_fits = [s for s in load(cli.PACKAGE_ROOT / "induction", "tiny").steps if s.kind == "fit"]
    assert len(fits) == len(tiny_fits) >= 2
    assert all("--trainer.max_steps=2" in f and "--trainer.max_steps=7 --model.lr=0.5" in f for f in fits)
    assert "max_steps=7" not in next(line for line in lines if line.startswith("curve:"))
    assert cli.main(["induction", "--dry-run", "--append", "sweep: --x", "--root", str(cli.PACKAGE_ROOT)]) == 2
    assert "induction (preset full) has no sweep step" in capsys.readouterr().err


def test_steps_run_in_the_repository_that_holds_the_reproductions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.repository(cli.PACKAGE_ROOT) == cli.PACKAGE_ROOT.parents[1]
    assert (cli.repository(cli.PACKAGE_ROOT) / "experiments" / "configs" / "induction.yaml").is_file()
    assert cli.repository(tmp_path / "elsewhere") == tmp_path
