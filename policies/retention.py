"""``policies/retention.yaml``, the retention policy every other part reads.

The loader and its validation live in mailstack (:mod:`mailstack.privacy`), which enforces the policy at
run time; this module only points them at the repository's file, so the Pulumi program, the CrossGuard
pack, ``make compliance`` and mailstack's purge all read one file through one loader.
"""

from __future__ import annotations

from pathlib import Path

from mailstack.privacy import (
    ACTIONS,
    REQUIRED_CLASSES,
    Action,
    DataClass,
    RetentionError,
    RetentionPolicy,
    parse_retention,
)
from mailstack.privacy import load_retention as _load

__all__ = [
    "ACTIONS",
    "REQUIRED_CLASSES",
    "RETENTION_FILE",
    "Action",
    "DataClass",
    "RetentionError",
    "RetentionPolicy",
    "load_retention",
    "parse_retention",
]

RETENTION_FILE = Path(__file__).with_name("retention.yaml")


def load_retention(path: Path | None = None) -> RetentionPolicy:
    """Read and validate the retention policy (``policies/retention.yaml`` by default)."""
    return _load(path or RETENTION_FILE)
