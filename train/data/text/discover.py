"""Finding a text corpus: files, folders and globs resolved, non-UTF-8 files refused or left out, a fixed order."""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn

from ..batch import DataError

READ_CHUNK = 1 << 24  # bytes read (and tokenised) at a time, so no file has to fit in memory at once


def default_corpus() -> list[Path]:
    """The Python standard library's own source files (`*.py` under sysconfig's stdlib path, no site-packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if p.is_file() and not {"site-packages", "dist-packages"} & set(p.parts))


def resolve_paths(paths: str | Iterable[str] | None) -> list[Path]:
    """Expand files, directories (every file below, recursively) and globs into a de-duplicated list of files."""
    if paths is None:
        return default_corpus()
    found: set[Path] = set()
    for entry in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        entry = os.path.expanduser(str(entry))
        path = Path(entry)
        if path.is_file():
            found.add(path.resolve())
        elif path.is_dir():
            found.update(p.resolve() for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif glob.has_magic(entry):
            matches = [Path(p).resolve() for p in glob.glob(entry, recursive=True) if Path(p).is_file()]
            if not matches:
                raise FileNotFoundError(f"text corpus: the glob {entry!r} matches no file")
            found.update(matches)
        else:
            raise FileNotFoundError(f"text corpus: {entry!r} is not a file, a directory or a glob that matches files")
    if not found:
        raise FileNotFoundError(f"text corpus: no files found in {paths!r}")
    return sorted(found)


def named_files(paths: str | Iterable[str] | None) -> set[Path]:
    """The entries of `paths` that name a file themselves (not a folder or a glob), resolved."""
    if paths is None:
        return set()
    entries = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    return {Path(os.path.expanduser(str(e))).resolve() for e in entries if Path(os.path.expanduser(str(e))).is_file()}


def text_problem(path: Path) -> str | None:
    """Why a file is not UTF-8 text (a NUL byte, or bytes that are not UTF-8, with the offset), or None."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    for chunk in read_chunks(path):
        nul = chunk.find(b"\0")
        if nul >= 0:
            return f"a NUL byte at byte {offset + nul}: binary data"
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as err:
            return f"bytes that are not UTF-8 at byte {max(0, offset + err.start)}"
        offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "a UTF-8 sequence cut off at the end"
    return None


def check_text_files(files: list[Path], named: set[Path]) -> list[Path]:
    """The files that are UTF-8 text. A file named in `paths` that is not is a DataError; one found in a folder or
    glob is left out with a warning; a corpus with nothing left is a DataError."""
    kept, skipped = [], []
    for path in files:
        problem = text_problem(path)
        if problem is None:
            kept.append(path)
        elif path in named:
            raise DataError(f"text corpus: {path} is not UTF-8 text ({problem}); give text files (convert other "
                            "encodings to UTF-8, e.g. with iconv)")
        else:
            skipped.append(f"{path} ({problem})")
    if skipped:
        rank_zero_warn(f"text corpus: left out {len(skipped)} file(s) that are not UTF-8 text: {'; '.join(skipped[:5])}"
                       + (" ..." if len(skipped) > 5 else ""))
    if files and not kept:
        raise DataError(f"text corpus: none of the {len(files)} file(s) is UTF-8 text, e.g. {skipped[0]}")
    return kept


def corpus_order(files: list[Path]) -> list[Path]:
    """A fixed pseudo-random order (by a hash of each path) so a positional split holds out a sample of files."""
    return sorted(files, key=lambda p: hashlib.sha1(str(p).encode()).hexdigest())


def read_chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes, READ_CHUNK at a time."""
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            yield chunk


def read_texts(path: Path) -> Iterator[str]:
    """A file as text (UTF-8, undecodable bytes replaced), in pieces cut at line ends."""
    carry = b""
    for chunk in read_chunks(path):
        chunk = carry + chunk
        cut = chunk.rfind(b"\n") + 1  # never split a multi-byte character: cut after a newline
        chunk, carry = chunk[:cut], chunk[cut:]
        if chunk:
            yield chunk.decode("utf-8", errors="replace")
    if carry:
        yield carry.decode("utf-8", errors="replace")
