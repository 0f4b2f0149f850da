"""Load flash-linear-attention's ops (fla-core) so that its Triton kernels run on CPU tensors under TRITON_INTERPRET=1.

Checked with fla-core 0.6.0 and triton 3.9: two shims suffice, both global to the process (fla_triton_cases.py runs
in a fresh one). (1) Every autotuner keeps its first config: the interpreter cannot benchmark several (it has no
driver to time them on). (2) A `for` loop over `range` binds its variable as a Triton tensor, as compiled Triton
does; the interpreter binds a Python int, on which fla's `i_t.to(tl.int64)` fails.
"""

from __future__ import annotations

import ast
import importlib.util
import warnings
from types import ModuleType

import pytest


def _first_config_only() -> None:
    from triton.runtime.autotuner import Autotuner

    init = Autotuner.__init__

    def __init__(self, fn, arg_names, configs, *args, **kwargs):
        init(self, fn, arg_names, configs[:1], *args, **kwargs)

    Autotuner.__init__ = __init__


def _loop_variables_as_tensors() -> None:
    from triton.runtime import interpreter

    transformer = interpreter.ASTTransformer

    def visit_For(self, node: ast.For) -> ast.For:
        node = self.generic_visit(node)
        it = node.iter
        ranged = isinstance(it, ast.Call) and (
            (isinstance(it.func, ast.Name) and it.func.id == "range")
            or (isinstance(it.func, ast.Attribute) and it.func.attr == "range")  # tl.range, not tl.static_range
        )
        if ranged and isinstance(node.target, ast.Name):
            name = node.target.id  # `i = i` first in the body: the interpreter turns an assignment into to_tensor(i)
            rebind = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=ast.Name(id=name, ctx=ast.Load()))
            node.body.insert(0, self.visit_Assign(rebind))
        return node

    transformer.visit_For = visit_For


def import_fla() -> ModuleType:
    """fla.ops with the interpreter shims in place; skip the test if fla-core is absent."""
    if importlib.util.find_spec("fla") is None:
        pytest.skip("fla-core not installed (a dev dependency: pip install -e '.[dev]')")
    _first_config_only()
    _loop_variables_as_tensors()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Triton is not supported on current platform")  # no GPU driver
        import fla.ops

    return fla.ops
