"""What the two backends spell alike but SQLAlchemy spells per dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["dialect_insert"]


def dialect_insert(conn: Connection, table: Table) -> Any:
    """An INSERT that takes ``ON CONFLICT`` clauses, for the connection's backend.

    "INSERT ... ON CONFLICT" is spelt the same by both backends, but SQLAlchemy has one class per dialect.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)
