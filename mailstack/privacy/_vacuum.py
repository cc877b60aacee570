"""Old row versions: what a database keeps on disk after rows were deleted or rewritten.

Neither backend overwrites a row in place. PostgreSQL leaves the old version as a *dead tuple* in the
table's pages until VACUUM prunes it; SQLite leaves old pages in the file's free list and in the WAL.
After an erasure or the one-time sealing of old plaintext (:func:`mailstack.privacy.convert_plaintext`),
those old versions are exactly what must not linger, so mailstack reclaims them at once:

- **PostgreSQL**: a plain ``VACUUM`` of each table that was changed, outside any transaction. It takes no
  lock that stops reads or writes (SHARE UPDATE EXCLUSIVE), so sending goes on. It prunes the dead
  tuples no running transaction can still see: no SQL, no ``pg_dump``, no replica reads them again.
  It does not zero the bytes of the page space it frees (they are overwritten by later rows) and cannot
  touch the WAL, WAL archives or backups taken before — see ``docs/security.md`` for what remains.
- **SQLite**: ``VACUUM`` rebuilds the whole file without free pages, then a ``TRUNCATE`` checkpoint writes
  the WAL back and empties it (it waits for readers up to the busy timeout).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from mailstack.observability import get_logger
from mailstack.storage import schema

__all__ = ["vacuum"]

log = get_logger("mailstack.privacy")


def vacuum(engine: Engine, tables: Iterable[str]) -> bool:
    """Reclaim the old row versions of ``tables`` (all of them on SQLite, which vacuums whole files).

    Never raises: the data is already erased or sealed when this runs, and a failure (logged, with the
    error's type only) only means the old versions wait for autovacuum or the next run. Returns whether
    it ran to the end.
    """
    if engine.dialect.name == "postgresql":
        names = sorted({name for name in tables if name in schema.metadata.tables})
        return all([_vacuum_table(engine, name) for name in names])
    try:
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("VACUUM")
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            (busy, *_rest) = cursor.fetchone() or (0,)
            cursor.close()
        finally:
            raw.close()
    except Exception as exc:  # the erasure or conversion has committed; this is a clean-up
        log.warning("vacuum failed", error=type(exc).__name__)
        return False
    if busy:
        log.warning("vacuum left the write-ahead log in place", reason="readers still using it")
    return True


def _vacuum_table(engine: Engine, name: str) -> bool:
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM {conn.dialect.identifier_preparer.quote(name)}")
    except Exception as exc:  # one table's failure does not keep the others from being vacuumed
        log.warning("vacuum failed", table=name, error=type(exc).__name__)
        return False
    return True
