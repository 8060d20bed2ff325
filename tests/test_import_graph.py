"""Imports point one way: export → train → scanner, and no two modules import each other
(directly or round a loop), lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"scanner": "dfscan.scanner", "train": "dfscan.train", "export": "dfscan.export"}
LAYER = {"dfscan.scanner": 0, "dfscan.train": 1, "dfscan.export": 2}


def module_names() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = module_names()


def top_level_statements(tree: ast.Module) -> list[ast.AST]:
    """What runs when the module is imported: its body, into ``if``/``try`` blocks, but not
    ``if TYPE_CHECKING:`` blocks nor function or class bodies' deferred imports."""
    found: list[ast.AST] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                todo += node.body
            todo += node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody
            todo += [s for handler in node.handlers for s in handler.body]
        else:
            found.append(node)
    return found


def imports_of(name: str, path: Path, at_import: bool = False) -> set[str]:
    """The dfscan modules ``name`` imports anywhere in its source (``from X import y`` counts
    as importing ``X.y`` when that is a module); with ``at_import``, only those its import runs."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in top_level_statements(tree) if at_import else ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def import_time_graph() -> dict[str, set[str]]:
    """Who runs whom while being imported. Importing ``a.b.c`` first runs the packages ``a.b``
    (their ``__init__``) that the importer is not itself inside: an edge to each of them."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        own = {name, *ancestors(name)}
        edges: set[str] = set()
        for target in imports_of(name, path, at_import=True):
            edges |= {target, *(p for p in ancestors(target) if p in MODULES and p not in own)}
        graph[name] = edges - {name}
    return graph


def layer(module: str) -> int:
    return LAYER[".".join(module.split(".")[:2])]


def test_the_graph_is_not_empty() -> None:
    assert "dfscan.scanner.errors" in GRAPH["dfscan.train.fit.loop"]
    assert "dfscan.train.models.backbones" in GRAPH["dfscan.train.models.registry"]


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_point_down_the_layers(name: str) -> None:
    """scanner imports neither train nor export; train never imports export."""
    upward = sorted(m for m in GRAPH[name] if layer(m) > layer(name))
    assert not upward, f"{name} imports {upward}"


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" → ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_every_module_imports_first() -> None:
    """No module, imported first in a fresh interpreter (as Ray Serve's replicas import
    ``serve.cli``), reaches itself through what its import runs, package ``__init__``s included."""
    cycles = find_cycles(import_time_graph())
    assert not cycles, "import-time cycles:\n" + "\n".join(cycles)


def test_no_import_cycles() -> None:
    """A module never reaches itself through its imports (package __init__ aside: importing a
    submodule runs its package, which is not a dependency on it)."""
    graph = {n: {m for m in deps if MODULES[m].stem != "__init__"} for n, deps in GRAPH.items()}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
