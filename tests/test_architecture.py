"""The house: imports form no cycle, and arrows only point train -> archs -> kernels (tools above the training core)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"kernels": 0, "archs": 1, "train": 2}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "seqmix." + ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for layer in LAYERS for p in (REPO / layer).rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every seqmix module `name` imports, at any depth of the file (function-level imports count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import seqmix.archs.mixer` or an attribute of a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def unresolved(name: str, path: Path, known: set[str]) -> list[str]:
    """The seqmix modules `name` imports that do not exist (e.g. a relative import left behind by a move)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("seqmix.")):
            anchor = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
            base = ".".join(anchor + ([node.module] if node.module else []))
            if base not in known and base != "seqmix":
                bad.append(f"{name}:{node.lineno} imports {base}")
    return bad


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layer(name: str) -> int:
    return LAYERS[name.split(".")[1]]


def test_the_graph_sees_the_imports_it_should():
    edges = graph()
    assert "seqmix.kernels" in edges["seqmix.archs.mamba"]  # `from seqmix import kernels`
    assert "seqmix.archs.mixer" in edges["seqmix.archs.attention"]  # `from .mixer import ...`
    assert "seqmix.train.errors" in edges["seqmix.train.preflight"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_seqmix_import_names_a_module_that_exists():
    mods = modules()
    assert [b for name, path in mods.items() for b in unresolved(name, path, set(mods))] == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_arrows_point_down_train_archs_kernels():
    against = [f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert against == []


def test_the_training_core_does_not_import_its_tools():
    core = [a for a in graph() if a.startswith("seqmix.train") and not a.startswith(("seqmix.train.tools",
                                                                                    "seqmix.train.main"))]
    edges = graph()
    assert [f"{a} -> {b}" for a in core for b in edges[a] if b.startswith("seqmix.train.tools")] == []


def test_tools_are_named_in_one_dispatch_table():
    """Every tool under train/tools is a `seqmix` subcommand with the one entry-point convention."""
    from seqmix.train.main import SUBCOMMANDS

    for name, target in SUBCOMMANDS.items():
        module, _, func = target.partition(":")
        assert module.startswith("seqmix.train.tools.") and func == "main", name
        source = modules()[module].read_text()
        assert re.search(r"^def main\(argv: .*\) -> int:", source, re.M), module
        assert re.search(r"^def build_parser\(\) -> argparse.ArgumentParser:", source, re.M), module
