"""The error the `seqmix` commands report as one line, without a traceback (the bottom of train's imports)."""

import sys


class SeqmixError(Exception):
    """A configuration error reported to the user as one line, without a traceback."""


def report(message: str, prefix: str = "seqmix: error: ") -> None:
    """Print an error line to stderr (`prefix` unless it already names seqmix) in one write: under DDP every process
    reports, and a write-through stderr would interleave a separate newline from another process's line."""
    sys.stderr.write(f"{message if message.startswith('seqmix') else prefix + message}\n")
