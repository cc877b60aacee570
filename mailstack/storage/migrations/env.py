"""Alembic environment: the connection is handed in by :func:`mailstack.storage.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from mailstack.storage._schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `mailstack migrate`, which supplies the connection")
_run(connection)
