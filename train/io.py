"""Crash-safe file writes: the one write-then-rename helper every seqmix output that must never be left half-written uses."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name a write to `path` goes through: hidden, in the same folder, unique per process and thread."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: some platforms cannot open a directory)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a file that replaces `path` all at once when the block ends without an error.

    Writes go to a temporary file in the same folder (so the rename cannot cross file systems); on a clean exit it is
    flushed, fsynced and ``os.replace``d over `path`, then the folder is fsynced. On an exception the temporary file is
    removed and `path` keeps its previous content (or stays absent). A process killed mid-write leaves at most a
    hidden ``.<name>.tmp-<pid>-<thread>`` file beside it, never a truncated `path`. Parent folders are created.
    """
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes whole files; mode must start with 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Replace `path` with `data` all at once: bytes, or text written as UTF-8 exactly as given (no newline translation)."""
    if isinstance(data, bytes):
        with atomic_open(path, "wb") as f:
            f.write(data)
    else:
        with atomic_open(path, "w", encoding="utf-8", newline="") as f:
            f.write(data)
