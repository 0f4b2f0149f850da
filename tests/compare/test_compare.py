"""`seqmix compare`: the report's table comes from real runs, and bad input fails before any training."""

import json

import pytest
from lightning.pytorch.core.saving import load_hparams_from_yaml

from seqmix.train.tools import compare
from seqmix.train.tools.bench import quick


@pytest.mark.parametrize("args, message", [
    (["--mixers", "transformer"], "unknown mixer 'transformer'"),
    (["--steps", "0"], "--steps must be a positive integer, got 0"),
    (["--min-lr-ratio", "1.5"], "min_lr_ratio must be in [0, 1], got 1.5"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
])
def test_bad_input_is_rejected_early(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare.main([*args, "--out", str(tmp_path)])
    assert message in capsys.readouterr().err
    assert not (tmp_path / compare.REPORT).exists()


@pytest.mark.slow
def test_report_from_a_short_run(tmp_path, monkeypatch, capsys):
    # a tiny benchmark instead of the quick preset, so that the whole report path runs in seconds
    monkeypatch.setattr(compare, "quick", lambda **kw: quick(**{**kw, "seq_lens": (64, 128), "repeats": 1,
                                                                 "params": 20_000, "decode_steps": 2}))
    out = tmp_path / "cmp"
    args = ["--out", str(out), "--steps", "30", "--params", "20000", "--mixers", "attention", "mamba"]
    assert compare.main(args) == 0
    printed = capsys.readouterr().out
    report = (out / compare.REPORT).read_text()
    trained = json.loads((out / "train_results.json").read_text())
    assert [t["mixer"] for t in trained] == ["attention", "mamba"]
    for t in trained:
        assert abs(t["params_non_embedding"] - 20_000) <= 400 and 0 <= t["val_acc"] <= 1
        assert t["train_tokens_per_s"] > 0 and t["train_s"] > 0
        row = next(line for line in report.splitlines() if line.startswith(f"| {t['mixer']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{t['params_non_embedding']:,}" and cells[2] == f"{t['val_acc']:.3f}"
        assert len(cells) == 8 and "–" not in cells[3:7], row
    assert "train tok/s L=64" in report and "train tok/s L=128" in report and report in printed
    assert "lr 0.003 (after warmup constant), 2 heads where the mixer has heads" in report
    # --heads reaches the mixers that have heads, and only them
    hparams = {m: load_hparams_from_yaml(str(out / "train" / m / "version_0" / "hparams.yaml"))
               for m in ("attention", "mamba")}
    assert hparams["attention"]["model"]["mixer_args"] == {"n_heads": 2, "impl": "sdpa"}  # bench's label for attention
    assert hparams["mamba"]["model"]["mixer_args"] == {}
    assert hparams["attention"]["min_lr_ratio"] == 1.0
    assert (out / "bench" / "bench.csv").exists() and any((out / "bench").glob("*.png"))
