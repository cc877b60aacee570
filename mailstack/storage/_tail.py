"""Reading the events table in order, exactly once, for each of its consumers (stats, webhooks, automation).

A consumer reads the events after its cursor and moves the cursor in the same transaction as whatever it
does with them, so each event is handled once even across crashes; locking the cursor row serialises
the consumers of a fleet. On PostgreSQL an event id can become visible after a higher one (sequence
values are taken before commit), so a hole in the ids is waited for a moment before it is taken for a
rolled-back insert (or a duplicate refused by ``ON CONFLICT``, which also consumes an id).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ._engagement import event_cursors
from ._schema import events

__all__ = ["GAP_GRACE_SECONDS", "EventTail"]

GAP_GRACE_SECONDS = 3.0


class EventTail:
    """The cursor ``name`` over the events table."""

    def __init__(
        self, name: str, *, gap_grace_seconds: float = GAP_GRACE_SECONDS, start_at_end: bool = False
    ) -> None:
        self.name = name
        self._grace = gap_grace_seconds
        # A consumer that only cares about what happens from now on (webhooks, automation) starts after
        # the newest event instead of replaying the whole history.
        self._start_at_end = start_at_end
        self._gaps: dict[int, float] = {}

    def read(self, conn: Connection, limit: int, columns: Sequence[Any] | None = None) -> list[Any]:
        """The next events (in id order, without holes still in flight), the cursor locked until commit.

        ``columns`` are selected (``events.c.id`` must come first); all of the table's by default.
        """
        cursor = self._lock(conn)
        query = select(*(columns if columns is not None else [events])).where(events.c.id > cursor)
        rows = list(conn.execute(query.order_by(events.c.id).limit(limit)))
        if conn.dialect.name != "postgresql":
            return rows  # SQLite has one writer at a time: ids become visible in order
        expected = cursor + 1
        now = time.monotonic()
        for index, row in enumerate(rows):
            if row[0] != expected:
                first_seen = self._gaps.setdefault(expected, now)
                if now - first_seen < self._grace:
                    return rows[:index]
                self._gaps.pop(expected, None)
            expected = row[0] + 1
        return rows

    def advance(self, conn: Connection, last_event_id: int) -> None:
        """Move the cursor past ``last_event_id`` (commit with the work done on the events)."""
        conn.execute(
            update(event_cursors)
            .where(event_cursors.c.name == self.name)
            .values(last_event_id=last_event_id, updated_at=time.time())
        )

    def position(self, conn: Connection) -> int:
        value = conn.execute(
            select(event_cursors.c.last_event_id).where(event_cursors.c.name == self.name)
        ).scalar()
        return int(value or 0)

    def _lock(self, conn: Connection) -> int:
        query = select(event_cursors.c.last_event_id).where(event_cursors.c.name == self.name)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        value = conn.execute(query).scalar()
        if value is None:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            start = conn.execute(select(func.max(events.c.id))).scalar() if self._start_at_end else 0
            conn.execute(
                dialect.insert(event_cursors)
                .values(name=self.name, last_event_id=start or 0, updated_at=time.time())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            value = conn.execute(query).scalar_one()
        return int(value)
