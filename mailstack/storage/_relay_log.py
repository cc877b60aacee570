"""Where Postfix's log has been read up to, and the Postfix queue ids it has mapped to messages.

Both are committed with the events the log lines produced, so a restart neither loses nor repeats any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select

from ._dialect import dialect_insert
from ._feedback import log_cursors, relay_queue_ids

__all__ = [
    "LogCursor",
    "RelayLog",
    "forget_queue_ids",
    "get_log_cursor",
    "load_queue_ids",
    "remember_queue_ids",
    "save_log_cursor",
]


@dataclass(frozen=True, slots=True)
class LogCursor:
    file_id: str
    position: int


def get_log_cursor(conn: Connection, name: str, *, lock: bool = False) -> LogCursor | None:
    """The stored position ``name``; ``lock`` holds its row until commit (PostgreSQL: another process
    reading the same log under the same name waits; SQLite has one writer at a time anyway)."""
    query = select(log_cursors.c.file_id, log_cursors.c.position).where(log_cursors.c.name == name)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return None if row is None else LogCursor(row.file_id, int(row.position))


def save_log_cursor(conn: Connection, name: str, cursor: LogCursor, *, now: float) -> None:
    values = {"file_id": cursor.file_id, "position": cursor.position, "updated_at": now}
    stmt = dialect_insert(conn, log_cursors).values(name=name, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))


def load_queue_ids(conn: Connection, source: str, queue_ids: Iterable[str]) -> dict[str, int]:
    """The messages behind the given Postfix queue ids, for those still remembered."""
    wanted = sorted(set(queue_ids))
    result: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        rows = conn.execute(
            select(relay_queue_ids.c.queue_id, relay_queue_ids.c.message_id).where(
                relay_queue_ids.c.source == source,
                relay_queue_ids.c.queue_id.in_(wanted[start : start + 500]),
            )
        )
        result.update({row.queue_id: int(row.message_id) for row in rows})
    return result


def remember_queue_ids(conn: Connection, source: str, mapping: Mapping[str, int], *, now: float) -> None:
    """Store queue id -> message (a reused queue id takes the newer message)."""
    if not mapping:
        return
    forget_queue_ids(conn, source, mapping.keys())
    conn.execute(
        dialect_insert(conn, relay_queue_ids),
        [
            {"source": source, "queue_id": qid, "message_id": message_id, "seen_at": now}
            for qid, message_id in mapping.items()
        ],
    )


def forget_queue_ids(
    conn: Connection, source: str, queue_ids: Iterable[str], *, older_than: float | None = None
) -> None:
    """Drop queue ids Postfix is done with; with ``older_than``, also any entry not seen since then."""
    wanted: Sequence[str] = sorted(set(queue_ids))
    for start in range(0, len(wanted), 500):
        conn.execute(
            delete(relay_queue_ids).where(
                relay_queue_ids.c.source == source,
                relay_queue_ids.c.queue_id.in_(wanted[start : start + 500]),
            )
        )
    if older_than is not None:
        conn.execute(
            delete(relay_queue_ids).where(
                relay_queue_ids.c.source == source, relay_queue_ids.c.seen_at < older_than
            )
        )


class RelayLog:
    """The read positions of Postfix's logs and the queue ids they mapped (see
    :class:`~mailstack.storage.Store`)."""

    def cursor(self, conn: Connection, name: str, *, lock: bool = False) -> LogCursor | None:
        """See :func:`get_log_cursor`."""
        return get_log_cursor(conn, name, lock=lock)

    def save_cursor(self, conn: Connection, name: str, cursor: LogCursor, *, now: float) -> None:
        """See :func:`save_log_cursor`."""
        save_log_cursor(conn, name, cursor, now=now)

    def queue_ids(self, conn: Connection, source: str, queue_ids: Iterable[str]) -> dict[str, int]:
        """See :func:`load_queue_ids`."""
        return load_queue_ids(conn, source, queue_ids)

    def remember_queue_ids(
        self, conn: Connection, source: str, mapping: Mapping[str, int], *, now: float
    ) -> None:
        """See :func:`remember_queue_ids`."""
        remember_queue_ids(conn, source, mapping, now=now)

    def forget_queue_ids(
        self, conn: Connection, source: str, queue_ids: Iterable[str], *, older_than: float | None = None
    ) -> None:
        """See :func:`forget_queue_ids`."""
        forget_queue_ids(conn, source, queue_ids, older_than=older_than)
