"""seqmix.train.io: whole-file replacement that a crash mid-write never truncates."""

import os

import pytest

from seqmix.train.io import atomic_open, atomic_write, temp_path


def test_atomic_write_replaces_text_and_bytes_exactly(tmp_path):
    path = tmp_path / "sub" / "out.csv"
    atomic_write(path, "a,b\r\n1,2\n")
    assert path.read_bytes() == b"a,b\r\n1,2\n"  # no newline translation, parent folder created
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.csv"]


def test_a_crash_mid_write_keeps_the_previous_file_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "results.json"
    atomic_write(path, "old\n")
    with pytest.raises(KeyboardInterrupt), atomic_open(path, "w") as f:
        f.write("new, half writ")
        f.flush()
        assert temp_path(path).exists() and path.read_text() == "old\n"
        raise KeyboardInterrupt  # e.g. Ctrl-C while the file is being written
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_a_failed_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    atomic_write(path, "before")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "after")
    monkeypatch.undo()
    assert path.read_text() == "before" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_only_whole_file_writes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="'a'"), atomic_open(tmp_path / "x", "a"):
        pass
