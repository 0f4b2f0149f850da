"""`seqmix compare` with hybrid layer patterns and `--mixers all`."""

import json

import pytest
from lightning.pytorch.core.saving import load_hparams_from_yaml

from seqmix.archs import MIXERS
from seqmix.train.tools import compare


def test_all_stands_for_every_registered_mixer():
    assert compare.expand_mixers(["all"]) == list(MIXERS)
    assert compare.expand_mixers(["mamba", "all", "mamba*3+attention"]) == [
        "mamba", *[m for m in MIXERS if m != "mamba"], "mamba*3+attention"]
    assert "'all' stands for every registered mixer" in " ".join(compare.build_parser().format_help().split())


@pytest.mark.parametrize("args, message", [
    (["--mixers", "mamba*3+attention"], "layers has 4 entries, which does not divide n_layers=2"),
    (["--mixers", "all", "mamba+hyena"], "unknown mixer 'hyena'"),
])
def test_bad_patterns_are_rejected_before_training(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare.main([*args, "--out", str(tmp_path)])
    assert message in capsys.readouterr().err
    assert not (tmp_path / compare.REPORT).exists()


@pytest.mark.slow
def test_short_report_with_a_hybrid(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["--out", str(out), "--steps", "3", "--params", "20000", "--n-layers", "2", "--no-bench",
            "--mixers", "mamba", "mamba+attention"]
    assert compare.main(args) == 0
    trained = json.loads((out / "train_results.json").read_text())
    assert [(t["mixer"], t["mixer_name"]) for t in trained] == [("mamba", "mamba"), ("mamba+attention", "mamba+attention")]
    for t in trained:
        assert abs(t["params_non_embedding"] - 20_000) <= 400 and 0 <= t["val_acc"] <= 1
    report = (out / compare.REPORT).read_text()
    assert any(line.startswith("| mamba+attention | ") for line in report.splitlines())
    hparams = load_hparams_from_yaml(str(out / "train" / "mamba+attention" / "version_0" / "hparams.yaml"))
    # --heads reaches the attention layer of the hybrid, and only it
    assert hparams["model"]["layers"] == ["mamba", {"class_path": "seqmix.archs.attention.Attention",
                                                    "init_args": {"impl": "sdpa", "n_heads": 2}}]
