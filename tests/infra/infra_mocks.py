"""Pulumi's mocks for the infra tests (imported by their conftest and by the tests themselves).

Mocks and configuration are process-wide in Pulumi: they are installed here, before any infra module is
imported, and afresh for every test, so tests neither see each other's resources nor depend on order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

# infra/ and policies/ are not installed packages: the repository root makes them importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.harness import RecordedResource, RecordingMonitor, install_mocks


def _fresh_mocks() -> RecordingMonitor:
    """Fresh mocks and empty configuration for the project ``mailstack``, stack ``test``."""
    return install_mocks("test", {})


_fresh_mocks()


class Mocked:
    """Runs a piece of program under the mocks and hands back what it registered."""

    def __init__(self) -> None:
        self.monitor = _fresh_mocks()

    def configure(self, config: dict[str, str]) -> None:
        """Replace the stack configuration (keys like ``mailstack:fleet``)."""
        pulumi.runtime.set_all_config(dict(config), [])

    def run(self, build: Callable[[], pulumi.Output[Any] | Any]) -> Any:
        """Call ``build`` inside a Pulumi test run; wait for every registration; return the value its
        returned Output resolved to (the Output.apply check of Pulumi's unit-testing guide)."""
        resolved: dict[str, Any] = {}

        @pulumi.runtime.test  # type: ignore[untyped-decorator]
        def execute() -> pulumi.Output[Any]:
            output = pulumi.Output.from_input(build())
            return output.apply(lambda value: resolved.setdefault("value", value))

        execute()
        assert "value" in resolved, "the component's outputs never resolved"
        return resolved["value"]

    @property
    def resources(self) -> list[RecordedResource]:
        return list(self.monitor.recorded)

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return [resource for resource in self.monitor.recorded if resource.type == type_token]

    def one(self, type_token: str, name: str | None = None) -> RecordedResource:
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_token} {name or ''}: {[r.name for r in found]}"
        return found[0]

    def assert_parented(self, component_type: str) -> None:
        """Every resource registered is a child (or grandchild) of a ``component_type`` component."""
        children = [r for r in self.monitor.recorded if r.type != component_type]
        assert children
        for child in children:
            assert f"{component_type}$" in child.urn, f"{child.urn} is not under {component_type}"
