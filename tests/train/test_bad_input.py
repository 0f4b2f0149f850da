"""Bad input fails early with one line naming the bad value and what would be valid, and writes nothing: malformed
config files, unknown options, text corpora that are missing, empty or binary, output folders that cannot be written
(seqmix fit, bench, compare)."""

import os
import sys
from pathlib import Path

import pytest
import yaml

from seqmix.train.main import main
from seqmix.train.preflight import config_file_problem, one_line, unwritable
from seqmix.train.tools import compare
from seqmix.train.tools.bench import cli as bench_cli

REPO = Path(__file__).resolve().parents[2]
MQAR = str(REPO / "experiments" / "configs" / "mqar.yaml")
TEXT = str(REPO / "experiments" / "configs" / "text.yaml")


def run_main(args, capsys) -> tuple[int, str]:
    """main(args) -> (exit code, stderr)."""
    code = 0
    try:
        main(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err


def error_line(err: str, command: str = "seqmix fit") -> str:
    """The one error line: the last line of stderr, which must start with `<command>: error:`; no traceback above."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{command}: error: "), err
    return last


def cheap(tmp_path: Path) -> list[str]:
    """Options that would make a wrongly accepted run end after one step and write under tmp_path."""
    return ["--wandb", "disabled", "--trainer.max_steps", "1", "--trainer.limit_val_batches", "0",
            "--trainer.default_root_dir", str(tmp_path / "runs")]


# ---- config files and options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("model:\n  lr: [1\n", ["malformed YAML", "line 2, column 7", "flow sequence"]),
        ("a: 1\n b: 2\n", ["malformed YAML", "mapping values are not allowed here at line 2, column 3"]),
        ("model:\n\tlr: 1\n", ["malformed YAML", "'\\t'", "line 2, column 1"]),
        ("- 1\n- 2\n", ["must hold a mapping of options", "got a list"]),
    ],
    ids=["unclosed-list", "bad-indent", "tab", "not-a-mapping"],
)
def test_malformed_config_files_name_file_line_and_column(content, words, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    code, err = run_main(["fit", "-c", MQAR, "-c", str(bad), *cheap(tmp_path)], capsys)
    line = error_line(err)
    assert code == 2 and f"config file {bad}" in line
    for word in words:
        assert word in line
    assert not (tmp_path / "runs").exists()


def test_config_file_problem_passes_good_files_and_non_files(tmp_path):
    assert config_file_problem(MQAR) is None
    assert config_file_problem(str(tmp_path / "missing.yaml")) is None  # jsonargparse says the file does not exist
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8 text" in config_file_problem(str(tmp_path / "bin.yaml"))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model.model.d_modle", "64"],
         ["unrecognized arguments: --model.model.d_modle", "did you mean --model.model.d_model?"]),
        (["--data.init_args.seq_lenn", "8"],
         ["Option 'seq_lenn' is not accepted", "MQARDataModule takes: vocab_size, seq_len"]),
        (["--model.model.mixer", "seqmix.archs.Mamba", "--model.model.mixer.init_args.d_sate", "8"],
         ["Option 'd_sate' is not accepted", "Mamba takes: d_state, d_conv"]),
        (["--nonfinite.action", "ignore"], ["nonfinite.action", "'stop', 'skip'", "ignore"]),
        (["--trainer.max_steps", "many"], ["trainer.max_steps", "many"]),
    ],
    ids=["option-typo", "data-option", "mixer-option", "guard-choice", "wrong-type"],
)
def test_unknown_options_and_bad_types_are_one_line_with_what_is_valid(args, words, tmp_path, capsys):
    code, err = run_main(["fit", "-c", MQAR, *cheap(tmp_path), *args], capsys)
    line = error_line(err)
    assert code == 2
    for word in words:
        assert word in line
    assert not (tmp_path / "runs").exists()


def test_unknown_key_in_a_config_file_suggests_the_right_one(tmp_path, capsys):
    typo = tmp_path / "typo.yaml"
    typo.write_text("trainr:\n  max_steps: 3\n")
    code, err = run_main(["fit", "-c", MQAR, "-c", str(typo), *cheap(tmp_path)], capsys)
    assert code == 2 and "'trainr.max_steps'" in error_line(err) and "did you mean --trainer.max_steps?" in err


def test_one_line_drops_union_noise():
    message = ('Parser key "data":\n  Does not validate against any of the Union subtypes\n  Subtypes: [A, NoneType]\n'
               "  Errors:\n    - Problem with given class_path 'seqmix.train.data.mqar.MQARDataModule':\n"
               "        Option 'foo' is not accepted\n    - Expected a <class 'NoneType'>\n"
               "  Given value type: <class 'str'>\n  Given value: x\n")
    line = one_line(message)
    assert "\n" not in line and "Subtypes" not in line and "NoneType" not in line
    assert line.startswith('Parser key "data": Problem with given class_path') and "MQARDataModule takes:" in line


# ---- text data ------------------------------------------------------------------------------------------------------


def text_args(tmp_path: Path, paths) -> list[str]:
    return ["fit", "-c", TEXT, *cheap(tmp_path), "--data.paths", yaml.safe_dump(paths, default_flow_style=True).strip(),
            "--data.seq_len", "16", "--data.cache_dir", str(tmp_path / "cache"), "--model.param_budget", "20000",
            "--trainer.gradient_clip_val", "null"]


def nothing_written(tmp_path: Path) -> bool:
    cache = tmp_path / "cache" / "text"
    return not (tmp_path / "runs").exists() and not (cache.exists() and any(cache.iterdir()))


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "good.txt").write_text("def f(x):\n    return x + 1  # ünïcödé\n" * 200, encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "nul.bin").write_bytes(b"GIF89a\x00\x01\x02" * 50)
    (root / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me\n".encode("latin-1") * 50)
    return root


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing.txt", ["missing.txt' is not a file, a directory or a glob that matches files"]),
        ("*.md", ["the glob", "*.md' matches no file"]),
        ("empty.txt", ["empty.txt is empty"]),
        ("nul.bin", ["nul.bin is not UTF-8 text (a NUL byte at byte 6: binary data)"]),
        ("latin1.txt", ["latin1.txt is not UTF-8 text (bytes that are not UTF-8 at byte 3)"]),
    ],
)
def test_missing_empty_and_binary_text_files_are_named(name, words, files, tmp_path, capsys):
    code, err = run_main(text_args(tmp_path, [str(files / name)]), capsys)
    line = error_line(err)
    assert code == 2 and line.startswith("seqmix fit: error: text corpus: ")
    for word in words:
        assert word in line
    assert nothing_written(tmp_path)


def test_a_folder_leaves_out_binary_files_with_a_warning_but_not_when_nothing_is_left(files, tmp_path, capsys):
    from seqmix.train.data.text import TextDataModule

    data = TextDataModule(paths=str(files), seq_len=16, cache_dir=str(tmp_path / "cache"))
    with pytest.warns(UserWarning, match=r"left out 2 file\(s\) that are not UTF-8 text: .*(nul\.bin|latin1\.txt)"):
        data.setup()
    assert data.meta["num_bytes"] == (files / "good.txt").stat().st_size
    only_binary = tmp_path / "binary"
    only_binary.mkdir()
    (only_binary / "a.bin").write_bytes(b"\x00" * 100)
    code, err = run_main(text_args(tmp_path, [str(only_binary)]), capsys)
    assert code == 2 and "none of the 1 file(s) is UTF-8 text" in error_line(err)


def test_a_corpus_too_short_for_seq_len_fails_before_the_run_directory_exists(files, tmp_path, capsys):
    code, err = run_main([*text_args(tmp_path, [str(files / "good.txt")]), "--data.seq_len", "4096"], capsys)
    line = error_line(err)
    assert code == 2 and "the val split has" in line and "fewer than seq_len + 1 = 4097" in line
    assert "a larger val_fraction" in line and not (tmp_path / "runs").exists()


# ---- output folders -------------------------------------------------------------------------------------------------


@pytest.fixture
def blocked(tmp_path) -> Path:
    """A folder path that cannot be created: a plain file is in the way."""
    (tmp_path / "a_file").write_text("")
    return tmp_path / "a_file" / "out"


def test_unwritable_says_why(tmp_path, blocked):
    assert unwritable(tmp_path) is None and unwritable(tmp_path / "new" / "deeper") is None
    assert "is a file, not a folder" in unwritable(blocked) and "is a file" in unwritable(tmp_path / "a_file")
    assert not (tmp_path / "new").exists()  # probing creates nothing


def test_fit_with_an_unwritable_root_dir_fails_before_training(blocked, tmp_path, capsys):
    code, err = run_main(["fit", "-c", MQAR, *cheap(tmp_path), "--trainer.default_root_dir", str(blocked)], capsys)
    line = error_line(err)
    assert code == 2 and f"--trainer.default_root_dir '{blocked}' cannot be written" in line and "is a file" in line
    assert "Trainer.fit" not in err and not (tmp_path / "runs").exists()


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_fit_into_a_read_only_folder_fails_before_training(tmp_path, capsys):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        code, err = run_main(["fit", "-c", MQAR, *cheap(tmp_path), "--trainer.default_root_dir", str(read_only)], capsys)
    finally:
        read_only.chmod(0o755)
    assert code == 2 and "is not writable" in error_line(err) and not any(read_only.iterdir())


def test_bench_with_an_unwritable_out_fails_before_measuring(blocked, monkeypatch, capsys):
    monkeypatch.setattr(bench_cli, "run_bench", lambda *a, **k: pytest.fail("the benchmark ran"))
    code, err = run_main(["bench", "--quick", "--out", str(blocked)], capsys)
    assert code == 2 and f"--out '{blocked}' cannot be written" in error_line(err, "seqmix bench")
    code, err = run_main(["bench", "--replot", str(blocked.parent / "x.csv"), "--out", str(blocked)], capsys)
    assert code == 2 and "cannot write the plots" in error_line(err, "seqmix bench")


def test_compare_with_an_unwritable_out_fails_before_training(blocked, monkeypatch, capsys):
    monkeypatch.setattr(compare, "train_one", lambda *a, **k: pytest.fail("compare trained"))
    with pytest.raises(SystemExit) as exit_:
        compare.main(["--out", str(blocked), "--no-bench"])
    assert exit_.value.code == 2
    assert f"--out '{blocked}' is not writable" in error_line(capsys.readouterr().err, "seqmix compare")


def test_a_second_run_without_a_logger_in_the_same_folder_is_refused_up_front(tmp_path, capsys):
    args = ["fit", "-c", MQAR, *cheap(tmp_path), "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
            "--data.init_args.num_train_examples", "64", "--data.init_args.num_val_examples", "16",
            "--model.param_budget", "5000"]
    code, err = run_main(args, capsys)
    assert code == 0, err
    code, err = run_main(args, capsys)
    line = error_line(err)
    assert code == 2 and "config.yaml is an earlier run's config" in line and "--trainer.default_root_dir" in line


def test_options_dropped_by_a_class_switch_are_named(tmp_path, capsys):
    """jsonargparse silently discards init_args the newly chosen class does not take; seqmix says which."""
    attention = str(REPO / "experiments" / "configs" / "mixers" / "attention.yaml")
    mamba = str(REPO / "experiments" / "configs" / "mixers" / "mamba.yaml")
    code, err = run_main(["fit", "-c", MQAR, "-c", attention, "-c", mamba, *cheap(tmp_path),
                          "--data.init_args.num_train_examples", "64", "--data.init_args.num_val_examples", "16",
                          "--model.param_budget", "5000"], capsys)
    assert code == 0, err
    assert (f"seqmix: note: model.model.mixer is seqmix.archs.Mamba, not seqmix.archs.Attention as in {attention}, "
            "so n_heads=4 from there is dropped (Mamba does not take it)") in err
    code, err = run_main(["fit", "-c", MQAR, "-c", mamba, *cheap(tmp_path), "--model.param_budget", "5000",
                          "--data.init_args.num_train_examples", "64", "--data.init_args.num_val_examples", "16"], capsys)
    assert code == 0 and "note" not in err  # a task config and a mixer config: nothing dropped
