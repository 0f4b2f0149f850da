"""Import an object by dotted path (``package.module.Name`` or ``package.module:name``)."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(path: str) -> Any:
    """The object `path` names; ImportError if the module cannot be imported, AttributeError if it lacks the name."""
    module, _, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    if not module or not name:
        raise ImportError(f"{path!r} is not a dotted path (package.module.Name or package.module:name)")
    return getattr(importlib.import_module(module), name)
