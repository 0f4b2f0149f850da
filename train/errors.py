"""The error the `seqmix` commands report as one line, without a traceback (the bottom of train's imports)."""


class SeqmixError(Exception):
    """A configuration error reported to the user as one line, without a traceback."""
