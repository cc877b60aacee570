"""The package structure the architecture document promises: no import cycles, one composition root."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mailstack

PACKAGE_DIR = Path(mailstack.__file__).parent
# The composition root: it builds every component, so nothing below it may import it.
ROOT_MODULES = {"mailstack.serve"}
# Entry points above the root (they only call it).
ENTRY_PACKAGES = {"mailstack.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every mailstack module ``path`` imports, TYPE_CHECKING and function-level imports included."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("mailstack"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("mailstack"):
                yield target
                yield from (f"{target}.{alias.name}" for alias in node.names)


def _unit(module: str) -> str:
    """The unit a module belongs to: its top-level package under mailstack, or itself."""
    parts = module.split(".")
    if len(parts) < 2:
        return module
    candidate = PACKAGE_DIR / parts[1]
    is_unit = candidate.is_dir() or (PACKAGE_DIR / f"{parts[1]}.py").exists()
    return ".".join(parts[:2]) if is_unit else "mailstack"  # a name from mailstack/__init__.py


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        source = _unit(_module_name(path))
        edges = graph.setdefault(source, set())
        for target in _imports(path):
            unit = _unit(target)
            if unit != source and unit != "mailstack":
                edges.add(unit)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative enough for 40 nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_packages_import_each_other_without_cycles() -> None:
    assert _cycles(package_graph()) == []


def test_a_cycle_is_detected() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_entry_points_import_the_composition_root() -> None:
    importers = {
        source
        for source, targets in package_graph().items()
        if targets & ROOT_MODULES and source not in ENTRY_PACKAGES
    }
    assert importers == set()
