"""The retention policy (``policies/retention.yaml``): loading and validation, shared by everything that
reads it — mailstack's purge, the Pulumi program, the CrossGuard pack and ``make compliance``.

Plain Python and PyYAML only. The one source of truth is the file next to this module (a real file, so
every wheel and every copy of the package carries it; ``policies/retention.yaml`` is a link to it), so an
installed mailstack enforces exactly the policy it was built with.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

import yaml

__all__ = [
    "ACTIONS",
    "POLICY_FILE",
    "REQUIRED_CLASSES",
    "Action",
    "DataClass",
    "RetentionError",
    "RetentionPolicy",
    "load_retention",
    "parse_retention",
]

# The policy shipped inside the package, which policies/retention.yaml links to (see the module docstring).
POLICY_FILE = Path(__file__).with_name("retention.yaml")

# The data classes the policy must always cover (the privacy issue's list, plus what the cloud side stores).
REQUIRED_CLASSES = (
    "message_bodies",
    "events",
    "delivery_logs",
    "contacts",
    "suppression_entries",
    "webhook_logs",
    "archives",
    "backups",
)
ACTIONS = ("delete", "anonymise")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

Action = Literal["delete", "anonymise"]


class RetentionError(ValueError):
    """The retention file is unusable; the message names the file and the offending key."""


@dataclass(frozen=True, slots=True)
class DataClass:
    """One class of data: how old it may get and what happens then."""

    name: str
    max_age_days: int
    action: Action
    description: str
    tables: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The whole policy: the classes by name and the tables exempt from retention (with the reason)."""

    classes: Mapping[str, DataClass]
    exempt: Mapping[str, str]
    source: Path
    # SHA-256 of the file's bytes: proves which policy a purge enforced (audit trail, make compliance).
    digest: str = ""

    def max_age(self, name: str) -> int:
        """``max_age_days`` of a class; KeyError names the class and the file when it is unknown."""
        try:
            return self.classes[name].max_age_days
        except KeyError:
            raise KeyError(f"data class {name!r} is not defined in {self.source}") from None

    def class_of_table(self, table: str) -> DataClass | None:
        """The class whose ``tables`` list ``table``, if any."""
        for data_class in self.classes.values():
            if table in data_class.tables:
                return data_class
        return None


def load_retention(path: Path | None = None) -> RetentionPolicy:
    """Read and validate a retention policy file (the one shipped with mailstack by default)."""
    source = path or POLICY_FILE
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise RetentionError(f"{source}: retention policy file not found") from None
    except OSError as exc:
        raise RetentionError(f"{source}: cannot be read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RetentionError(f"{source}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise RetentionError(f"{source}: not valid YAML: {exc}") from None
    return replace(parse_retention(raw, source), digest=hashlib.sha256(data).hexdigest())


def parse_retention(raw: object, source: Path) -> RetentionPolicy:
    """Validate an already-parsed document; every error names ``source`` and the key."""

    def fail(key: str, problem: str) -> RetentionError:
        return RetentionError(f"{source}: {key}: {problem}")

    if not isinstance(raw, dict):
        raise fail("(top level)", "expected a mapping with 'version', 'classes' and 'exempt'")
    document = cast(dict[str, Any], raw)
    unknown = set(document) - {"version", "classes", "exempt"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key (known: version, classes, exempt)")
    if document.get("version") != 1:
        raise fail("version", f"expected 1, got {document.get('version')!r}")
    classes_raw = document.get("classes")
    if not isinstance(classes_raw, dict) or not classes_raw:
        raise fail("classes", "expected a mapping of class name to its settings")
    classes: dict[str, DataClass] = {}
    for name, settings in classes_raw.items():
        key = f"classes.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(key, "class names are lowercase letters, digits and underscores")
        classes[name] = _parse_class(
            name, settings, lambda field, problem, k=key: fail(f"{k}.{field}", problem)
        )
    missing = [name for name in REQUIRED_CLASSES if name not in classes]
    if missing:
        raise fail("classes", f"missing required classes: {', '.join(missing)}")
    exempt_raw = document.get("exempt", {})
    if not isinstance(exempt_raw, dict) or not all(
        isinstance(table, str) and isinstance(reason, str) and reason.strip()
        for table, reason in exempt_raw.items()
    ):
        raise fail("exempt", "expected a mapping of table name to the reason it needs no retention limit")
    exempt = cast(dict[str, str], exempt_raw)
    seen: dict[str, str] = {}
    for data_class in classes.values():
        for table in data_class.tables:
            if table in seen:
                raise fail(f"classes.{data_class.name}.tables", f"table {table!r} is also in {seen[table]}")
            if table in exempt:
                raise fail(f"classes.{data_class.name}.tables", f"table {table!r} is also exempt")
            seen[table] = data_class.name
    return RetentionPolicy(classes=classes, exempt=exempt, source=source)


def _parse_class(name: str, settings: object, fail: Any) -> DataClass:
    if not isinstance(settings, dict):
        raise fail("max_age_days", "expected a mapping with max_age_days, action, description, tables")
    values = cast(dict[str, Any], settings)
    unknown = set(values) - {"max_age_days", "action", "description", "tables"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key (known: max_age_days, action, description, tables)")
    days = values.get("max_age_days")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise fail("max_age_days", f"expected a whole number of days >= 1, got {days!r}")
    action = values.get("action")
    if action not in ACTIONS:
        raise fail("action", f"expected delete or anonymise, got {action!r}")
    description = values.get("description")
    if not isinstance(description, str) or not description.strip():
        raise fail("description", "expected a sentence saying what the class holds")
    tables = values.get("tables", [])
    if not isinstance(tables, list) or not all(isinstance(t, str) and t for t in tables):
        raise fail("tables", "expected a list of table names")
    return DataClass(name, days, cast(Action, action), description.strip(), tuple(tables))
