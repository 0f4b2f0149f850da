"""The one integer-option check of the training core: a clear, early, one-line ValueError naming the value."""

from __future__ import annotations

from typing import Any


def check_int(name: str, value: Any, minimum: int = 1, optional: bool = False) -> Any:
    """Return value if it is an int >= minimum (or None when optional), else raise a ValueError naming `name`."""
    if optional and value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {kind}{' or None' if optional else ''}, got {value!r}")
    return value
