"""Engine creation for the two storage backends, SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

__all__ = ["create_storage_engine", "normalize_url"]


def normalize_url(url: str) -> str:
    """Accept libpq-style ``postgresql://`` URLs and route them to psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r} (use sqlite or postgresql)")
    return parsed.render_as_string(hide_password=False)


def create_storage_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine tuned for the queue: WAL and immediate transactions on SQLite, a pool on PostgreSQL."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's implicit transactions would defer the write lock and invite SQLITE_BUSY deadlocks
    # between two writers; take the write lock when a transaction begins instead.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
