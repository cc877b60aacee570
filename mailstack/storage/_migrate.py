"""Schema migrations (Alembic), run by ``mailstack init``, ``mailstack migrate`` and at ``serve`` start."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["SCHEMA_HEAD", "alembic_config", "migrate"]

_MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision (tests/storage/test_migrate.py keeps it equal to Alembic's head). A database already
# there is left alone without importing Alembic, a good part of a restart's time.
SCHEMA_HEAD = "0012_lease_owner"
# Any constant works; it only has to be the same for every node of a fleet.
_PG_MIGRATION_LOCK = 0x6D61696C


def alembic_config() -> Config:
    from alembic.config import Config  # noqa: PLC0415 - only when migrating (see SCHEMA_HEAD)

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision; concurrent nodes on PostgreSQL take turns."""
    with engine.connect() as connection:
        if _revision(connection) == SCHEMA_HEAD:
            return
    from alembic import command  # noqa: PLC0415 - only when migrating (see SCHEMA_HEAD)

    config = alembic_config()
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # SQLite alters a table by copying it; with foreign keys enforced, dropping the original
            # would trip over the rows referring to it. Outside a transaction, so the pragma applies.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            connection.commit()
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
        finally:
            if connection.dialect.name == "sqlite":
                connection.rollback()
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                connection.commit()


def _revision(connection: Connection) -> str | None:
    """The database's schema revision; None when it has none yet (or several: a branch to merge)."""
    try:
        revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:  # no table yet
        connection.rollback()
        return None
    return revisions[0] if len(revisions) == 1 else None
