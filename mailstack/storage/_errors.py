"""Storage that is away for a while (a database restart, a lost connection, a full disk)."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError

__all__ = ["StorageUnavailable", "is_unavailable"]

# SQLite's messages for a full disk, a file it cannot reach and a lock held too long by another process.
_SQLITE_UNAVAILABLE = ("disk is full", "disk i/o error", "unable to open", "database is locked")


class StorageUnavailable(Exception):  # noqa: N818 - the name the API maps to 503
    """The database cannot be used right now; the same request succeeds once it is back."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the storage is away for now (retry later) rather than a bad request or bug."""
    if isinstance(exc, StorageUnavailable):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, psycopg.OperationalError):
        return True  # connection refused or lost, server shutting down, too many connections
    if isinstance(exc, sqlite3.OperationalError):
        return any(text in str(exc).lower() for text in _SQLITE_UNAVAILABLE)
    return isinstance(exc, OSError) and exc.errno is not None and exc.errno in _OS_UNAVAILABLE


_OS_UNAVAILABLE = {28, 122}  # ENOSPC, EDQUOT
