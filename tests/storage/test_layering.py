"""Storage is a bottom layer: it imports none of the packages built on it, not even for type checking
(privacy, feedback, stats and the rest hold a Store; storage never needs them back)."""

from __future__ import annotations

import ast
from pathlib import Path

import mailstack.storage

# What storage may build on: leaf modules with no storage of their own.
ALLOWED = {"addresses", "config", "keyring", "model", "storage"}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "mailstack" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_storage_imports_nothing_built_on_it() -> None:
    root = Path(mailstack.storage.__file__).parent
    outside = {
        f"{path.relative_to(root)}: mailstack.{package}"
        for path in sorted(root.rglob("*.py"))
        for package in _imported_packages(path) - ALLOWED
    }
    assert outside == set()
