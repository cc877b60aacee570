"""Telling "the database is unavailable right now" from every other storage error.

An unavailable database (PostgreSQL gone or restarting, a dropped connection, a full disk, a disk I/O
error, a SQLite file locked past its timeout) is temporary: a client should retry later, and the HTTP API
answers 503 with ``Retry-After``. Anything else (a constraint violation, an SQL error) is a bug or a
conflict and must not be disguised as a transient outage.
"""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy import exc as sa_exc

__all__ = ["StorageUnavailable", "is_unavailable"]

# SQLite reports these as OperationalError, as it does for SQL mistakes ("no such table"); only these
# mean the file cannot be used right now.
_SQLITE_UNAVAILABLE = (
    "database or disk is full",
    "disk i/o error",
    "database is locked",
    "unable to open database file",
)


class StorageUnavailable(Exception):  # noqa: N818 - the domain's word, as in "503 Service Unavailable"
    """The database cannot be reached or written at the moment; retrying later may succeed."""


def _driver_unavailable(error: BaseException) -> bool:
    if isinstance(error, psycopg.OperationalError):
        # Class 08 (connection), 53 (disk full, out of memory), 57 (shutdown, cancel), no SQLSTATE at all
        # (the connection is gone): every psycopg OperationalError is about the server, not the SQL.
        return True
    if isinstance(error, sqlite3.OperationalError):
        message = str(error).lower()
        return any(fragment in message for fragment in _SQLITE_UNAVAILABLE)
    return False


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database is unavailable rather than the query wrong."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StorageUnavailable | sa_exc.DisconnectionError | sa_exc.TimeoutError):
            return True  # TimeoutError: no pooled connection came free in time
        if isinstance(error, sa_exc.DBAPIError):
            if error.connection_invalidated:
                return True
            if error.orig is not None and _driver_unavailable(error.orig):
                return True
        elif _driver_unavailable(error):
            return True
        error = error.__cause__ or error.__context__
    return False
