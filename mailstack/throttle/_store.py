"""Where throttle state lives: one narrow interface, one implementation per database backend.

The state is shared by every worker thread, process and node using the database. A decision locks the
rows it reads (``SELECT … FOR UPDATE`` in key order on PostgreSQL, the database write lock taken by
``BEGIN IMMEDIATE`` on SQLite), lets the pure planner change them, writes back what changed and commits:
refill, take and waitlist are one atomic step however many nodes ask at once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mailstack.storage import reading, schema

from ._bucket import BucketState
from ._plan import Snapshot

T = TypeVar("T")

_buckets: Table = schema.metadata.tables["throttle_buckets"]
_daily: Table = schema.metadata.tables["throttle_daily"]


class ThrottleStore(Protocol):
    """What the throttle needs from storage."""

    def api_keys(self, message_ids: Collection[int]) -> dict[int, tuple[int, str]]:
        """Each message's API key: ``{message id: (api key id, public key)}``."""

    def update(
        self,
        buckets: Mapping[str, BucketState],
        days: Collection[tuple[str, int]],
        change: Callable[[Snapshot], T],
    ) -> T:
        """Lock and load the buckets (created as given when new) and the (ip, day) counters; call
        ``change`` on them; write back what it changed; commit. Returns what ``change`` returned."""


class _SqlThrottleStore:
    _dialect_insert: Callable[[Table], Any]
    _lock = False

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def api_keys(self, message_ids: Collection[int]) -> dict[int, tuple[int, str]]:
        if not message_ids:
            return {}
        messages, api_keys = schema.messages, schema.api_keys
        query = (
            select(messages.c.id, api_keys.c.id.label("key_id"), api_keys.c.public_key)
            .join(api_keys, api_keys.c.id == messages.c.api_key_id)
            .where(messages.c.id.in_(sorted(message_ids)))
        )
        with reading(self._engine) as conn:
            return {row.id: (row.key_id, row.public_key) for row in conn.execute(query)}

    def update(
        self,
        buckets: Mapping[str, BucketState],
        days: Collection[tuple[str, int]],
        change: Callable[[Snapshot], T],
    ) -> T:
        with self._engine.begin() as conn:
            before = Snapshot(self._load_buckets(conn, buckets), self._load_days(conn, days))
            after = Snapshot(dict(before.buckets), dict(before.daily))
            result = change(after)
            self._save(conn, before, after)
        return result

    def _locking(self, query: Any) -> Any:
        return query.with_for_update() if self._lock else query

    def _load_buckets(self, conn: Connection, defaults: Mapping[str, BucketState]) -> dict[str, BucketState]:
        if not defaults:
            return {}
        keys = sorted(defaults)
        # Create missing rows first, so that the locking read below sees and locks every one of them; rows
        # are always touched in key order, so two transactions never wait on each other in a cycle.
        conn.execute(
            self._dialect_insert(_buckets).on_conflict_do_nothing(),
            [
                {
                    "key": key,
                    "tokens": defaults[key].tokens,
                    "updated_at": defaults[key].updated_at,
                    "waitlist_until": defaults[key].waitlist_until,
                }
                for key in keys
            ],
        )
        rows = conn.execute(
            self._locking(select(_buckets).where(_buckets.c.key.in_(keys)).order_by(_buckets.c.key))
        )
        return {row.key: BucketState(row.tokens, row.updated_at, row.waitlist_until) for row in rows}

    def _load_days(self, conn: Connection, days: Collection[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not days:
            return {}
        ordered = sorted(days)
        conn.execute(
            self._dialect_insert(_daily).on_conflict_do_nothing(),
            [{"ip": ip, "day": day, "sent": 0} for ip, day in ordered],
        )
        loaded: dict[tuple[str, int], int] = {}
        for ip, day in ordered:
            row = conn.execute(
                self._locking(select(_daily.c.sent).where(_daily.c.ip == ip, _daily.c.day == day))
            ).one()
            loaded[ip, day] = row.sent
        return loaded

    @staticmethod
    def _save(conn: Connection, before: Snapshot, after: Snapshot) -> None:
        changed = [
            {"k": key, "t": state.tokens, "u": state.updated_at, "w": state.waitlist_until}
            for key, state in sorted(after.buckets.items())
            if before.buckets.get(key) != state
        ]
        if changed:
            conn.execute(
                update(_buckets)
                .where(_buckets.c.key == bindparam("k"))
                .values(tokens=bindparam("t"), updated_at=bindparam("u"), waitlist_until=bindparam("w")),
                changed,
            )
        counted = [
            {"i": ip, "d": day, "s": sent}
            for (ip, day), sent in sorted(after.daily.items())
            if before.daily.get((ip, day)) != sent
        ]
        if counted:
            conn.execute(
                update(_daily)
                .where(_daily.c.ip == bindparam("i"), _daily.c.day == bindparam("d"))
                .values(sent=bindparam("s")),
                counted,
            )


class SqliteThrottleStore(_SqlThrottleStore):
    """The embedded store: SQLite's write lock (taken at BEGIN IMMEDIATE) serialises decisions."""

    _dialect_insert = staticmethod(sqlite.insert)


class PostgresThrottleStore(_SqlThrottleStore):
    """The fleet store: row locks in key order serialise decisions on the same buckets only."""

    _dialect_insert = staticmethod(postgresql.insert)
    _lock = True


def throttle_store_for(engine: Engine) -> ThrottleStore:
    """The store implementation for the engine's database."""
    if engine.dialect.name == "postgresql":
        return PostgresThrottleStore(engine)
    if engine.dialect.name == "sqlite":
        return SqliteThrottleStore(engine)
    raise ValueError(f"no throttle store for {engine.dialect.name}")
