"""policies/retention.yaml: the shipped policy is valid, and mistakes name the file and key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.retention import (
    REQUIRED_CLASSES,
    RETENTION_FILE,
    RetentionError,
    load_retention,
    parse_retention,
)

SOURCE = Path("retention.yaml")


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RETENTION_FILE.read_text())
    return loaded


def test_the_shipped_policy_covers_every_required_class() -> None:
    policy = load_retention()
    assert set(REQUIRED_CLASSES) <= set(policy.classes)
    assert policy.max_age("backups") <= 35  # what RDS can honour
    assert policy.classes["message_bodies"].tables == ("contents", "outbox")
    events = policy.class_of_table("events")
    assert events is not None and events.name == "events"
    assert policy.class_of_table("api_keys") is None and "api_keys" in policy.exempt
    with pytest.raises(KeyError, match="not defined"):
        policy.max_age("forever")


def _broken(edit: Any) -> dict[str, Any]:
    document = copy.deepcopy(_document())
    edit(document)
    return document


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=2), "version: expected 1"),
        (lambda d: d.update(extra=1), "extra: unknown key"),
        (lambda d: d["classes"].pop("backups"), "missing required classes: backups"),
        (
            lambda d: d["classes"]["events"].update(max_age_days=0),
            "classes.events.max_age_days: expected a whole",
        ),
        (lambda d: d["classes"]["events"].update(max_age_days="a year"), "classes.events.max_age_days"),
        (
            lambda d: d["classes"]["events"].update(action="archive"),
            "classes.events.action: expected delete or",
        ),
        (lambda d: d["classes"]["events"].update(description=""), "classes.events.description"),
        (lambda d: d["classes"]["events"].update(keep=True), "classes.events.keep: unknown key"),
        (lambda d: d["classes"]["events"].update(tables="events"), "classes.events.tables: expected a list"),
        (lambda d: d["classes"]["archives"].update(tables=["events"]), "table 'events' is also in events"),
        (lambda d: d["classes"]["events"].update(tables=["api_keys"]), "table 'api_keys' is also exempt"),
        (lambda d: d.update(exempt={"api_keys": ""}), "exempt: expected a mapping"),
        (
            lambda d: d["classes"].update({"Bad-Name": d["classes"]["events"]}),
            "classes.Bad-Name: class names",
        ),
    ],
)
def test_mistakes_name_the_key(edit: Any, message: str) -> None:
    with pytest.raises(RetentionError) as raised:
        parse_retention(_broken(edit), SOURCE)
    assert str(raised.value).startswith("retention.yaml: ")
    assert message in str(raised.value)


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(RetentionError, match="not found"):
        load_retention(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [unclosed\n")
    with pytest.raises(RetentionError, match="not valid YAML"):
        load_retention(bad)
