"""The migrations build exactly the tables the code declares (engagement tables included)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from mailstack.storage._migrate import SCHEMA_HEAD, alembic_config
from mailstack.storage.schema import metadata


def test_migrated_schema_matches_the_declared_one(engine: Engine) -> None:
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_the_revisions_form_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, script.get_heads()


def test_the_head_known_without_alembic_is_alembics() -> None:
    # serve skips Alembic when the database is at SCHEMA_HEAD: a stale constant would skip a migration.
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD
