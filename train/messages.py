"""jsonargparse's errors as one line that names the bad value and what would be valid."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from jsonargparse import ArgumentParser

from .dotted import import_object

# Lines of jsonargparse's multi-line messages that repeat what the other lines say.
_NOISE = ("Does not validate against any of the Union subtypes", "Subtypes:", "Errors:", "Given value type:",
          "Given value:", "Expected a <class 'NoneType'>")


def init_options(class_path: str) -> list[str] | None:
    """The keyword options of a class given by import path (what its init_args may hold, with a `**kwargs` passed on
    to a parent resolved to the parent's options as jsonargparse resolves it), or None if not importable."""
    module = class_path.rpartition(".")[0]
    try:
        options = ArgumentParser().add_class_arguments(import_object(class_path), fail_untyped=False)
    except (ImportError, AttributeError, ValueError, TypeError):
        return None
    return [o for o in options if o != "d_model"] if "archs" in module else options


def one_line(message: str, known_options: Iterable[str] = (), command: str = "seqmix <command>") -> str:
    """jsonargparse's (often multi-line) error as one line, with the valid options or a close match where known."""
    lines = [line.strip().removeprefix("- ").strip() for line in str(message).splitlines()]
    lines = [line for line in lines if line and not line.startswith(_NOISE)]
    specific = [line for line in lines if not line.startswith("Expected a <class")]
    if len(specific) > 1:  # an alternative's own error says more than "expected a str" from another alternative
        lines = specific
    text = re.sub(r"\s+", " ", " ".join(lines)).replace(": :", ":").strip()
    unknown = re.search(r"Option '([^']+)' is not accepted", text)
    class_path = re.search(r"class_path[=\s]'([\w.]+)'", str(message))
    if unknown and class_path:
        options = init_options(class_path.group(1))
        if options:
            text += f"; {class_path.group(1).rsplit('.', 1)[-1]} takes: {', '.join(options)}"
    unrecognized = re.match(r"unrecognized arguments: (.*)", text)
    not_accepted = re.search(r"does not accept option '([^']+)'", text)
    if unrecognized or not_accepted:
        known = sorted({o for o in known_options if o.startswith("--")})
        if unrecognized:
            bad = [a.split("=", 1)[0] for a in unrecognized.group(1).split() if a.startswith("--")]
        else:
            bad = [f"--{not_accepted.group(1)}"]
        hints = [m[0] for b in bad if (m := difflib.get_close_matches(b, known, n=1, cutoff=0.75))]
        if hints:
            text += f" (did you mean {', '.join(hints)}?)"
        else:
            text += f" ({command} --help lists every option)"
    return text
