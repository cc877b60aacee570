from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, select, text, tuple_, update

from mailstack.storage import reading, schema

from ._base import Lease, LeaseOwner, Queue, QueueStats

_jobs = schema.queue_jobs

# Claim due jobs and mark them leased in one statement; the backends differ only in how concurrent
# claimers are kept apart (row locks skipped on PostgreSQL, the database write lock on SQLite).
_LEASE_SQL = """
UPDATE queue_jobs
SET state = 'leased', due_at = :expires, lease_token = :token, attempts = attempts + 1,
    lease_node = :node, lease_incarnation = :incarnation
WHERE id IN (
    SELECT id FROM queue_jobs
    WHERE state != 'dead' AND due_at <= :now
    -- An expired lease of this very incarnation is still being worked on (its renewal was held up, say
    -- by a database restart): only other nodes, which cannot know it is alive, may take it.
    AND (state = 'ready' OR lease_node IS NULL OR lease_node != COALESCE(CAST(:node AS VARCHAR(64)), '')
         OR lease_incarnation != COALESCE(CAST(:incarnation AS BIGINT), -1))
    ORDER BY due_at
    LIMIT :limit
    {lock}
)
RETURNING id, message_id, attempts
"""


# PostgreSQL's complete_many: arrays keep the text the same whatever the batch size, so psycopg converts
# it once and the server can keep its plan (a ``(id, token) IN (...)`` list of more than 25 leases has more
# parameters than psycopg caches, 50). ``j.id = ANY(:ids)`` besides the join so that the generic plan
# finds the jobs by primary key rather than hashing a sequential scan of the whole queue.
_PG_COMPLETE = text(
    """
DELETE FROM queue_jobs AS j
USING unnest(CAST(:ids AS BIGINT[]), CAST(:tokens AS VARCHAR[])) AS l(id, token)
WHERE j.id = ANY(CAST(:ids AS BIGINT[])) AND j.id = l.id AND j.lease_token = l.token
RETURNING j.id
"""
)


class _SqlQueue:
    _lock_clause = ""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lease_sql = text(_LEASE_SQL.format(lock=self._lock_clause))

    def enqueue(self, conn: Connection, message_ids: Sequence[int], *, available_at: float) -> None:
        if message_ids:
            conn.execute(
                _jobs.insert(),
                [{"message_id": m, "state": "ready", "due_at": available_at} for m in message_ids],
            )

    def lease(
        self, limit: int, lease_seconds: float, *, now: float, owner: LeaseOwner | None = None
    ) -> list[Lease]:
        token = secrets.token_hex(16)
        expires = now + lease_seconds
        values = {
            "expires": expires,
            "token": token,
            "now": now,
            "limit": limit,
            "node": owner.node if owner else None,
            "incarnation": owner.incarnation if owner else None,
        }
        with self._engine.begin() as conn:
            rows = conn.execute(self._lease_sql, values).all()
        leases = [Lease(r.id, r.message_id, r.attempts, token, expires) for r in rows]
        leases.sort(key=lambda lease: lease.job_id)
        return leases

    def renew(self, owner: LeaseOwner, lease_seconds: float, *, now: float) -> int:
        with self._engine.begin() as conn:
            result = conn.execute(
                update(_jobs)
                .where(
                    _jobs.c.state == "leased",
                    _jobs.c.lease_node == owner.node,
                    _jobs.c.lease_incarnation == owner.incarnation,
                )
                .values(due_at=now + lease_seconds)
            )
        return result.rowcount

    def reclaim(self, owner: LeaseOwner, *, now: float) -> int:
        # The attempt stays counted: the previous incarnation may have sent the message.
        with self._engine.begin() as conn:
            result = conn.execute(
                update(_jobs)
                .where(
                    _jobs.c.state == "leased",
                    _jobs.c.lease_node == owner.node,
                    _jobs.c.lease_incarnation != owner.incarnation,
                )
                .values(state="ready", due_at=now, lease_token=None)
            )
        return result.rowcount

    @staticmethod
    def _owned(lease: Lease) -> ColumnElement[bool]:
        return and_(_jobs.c.id == lease.job_id, _jobs.c.lease_token == lease.token)

    def owned(self, conn: Connection, leases: Sequence[Lease]) -> set[int]:
        if not leases:
            return set()
        pairs = [(lease.job_id, lease.token) for lease in leases]
        held = select(_jobs.c.id).where(tuple_(_jobs.c.id, _jobs.c.lease_token).in_(pairs))
        return set(conn.execute(held).scalars())

    def complete_many(self, conn: Connection, leases: Sequence[Lease]) -> set[int]:
        if not leases:
            return set()
        # One statement for the batch; a lease counts only with its token (see complete).
        owned = tuple_(_jobs.c.id, _jobs.c.lease_token).in_([(lease.job_id, lease.token) for lease in leases])
        removed = set(conn.execute(_jobs.delete().where(owned).returning(_jobs.c.id)).scalars())
        return {lease.job_id for lease in leases} - removed

    def complete(self, conn: Connection, lease: Lease) -> bool:
        result = conn.execute(_jobs.delete().where(self._owned(lease)))
        return result.rowcount == 1

    def retry(self, conn: Connection, lease: Lease, *, available_at: float, error: str) -> bool:
        result = conn.execute(
            update(_jobs)
            .where(self._owned(lease))
            .values(state="ready", due_at=available_at, lease_token=None, last_error=error[:2000])
        )
        return result.rowcount == 1

    def postpone(self, conn: Connection, lease: Lease, *, available_at: float) -> bool:
        result = conn.execute(
            update(_jobs)
            .where(self._owned(lease))
            .values(state="ready", due_at=available_at, lease_token=None, attempts=_jobs.c.attempts - 1)
        )
        return result.rowcount == 1

    def dead(self, conn: Connection, lease: Lease, *, error: str) -> bool:
        result = conn.execute(
            update(_jobs)
            .where(self._owned(lease))
            .values(state="dead", lease_token=None, last_error=error[:2000])
        )
        return result.rowcount == 1

    def flush(self) -> None:
        """Nothing to do: completing a job deletes its row inside the caller's transaction."""

    def release(self, leases: Sequence[Lease], *, now: float) -> None:
        if not leases:
            return
        with self._engine.begin() as conn:
            for lease in leases:
                conn.execute(
                    update(_jobs)
                    .where(self._owned(lease))
                    .values(state="ready", due_at=now, lease_token=None, attempts=_jobs.c.attempts - 1)
                )

    def stats(self, *, now: float) -> QueueStats:
        with reading(self._engine) as conn:
            grouped = conn.execute(select(_jobs.c.state, func.count()).group_by(_jobs.c.state))
            counts: dict[str, int] = {state: count for state, count in grouped}
            oldest = conn.execute(select(func.min(_jobs.c.due_at)).where(_jobs.c.state == "ready")).scalar()
        return QueueStats(
            ready=int(counts.get("ready", 0)),
            leased=int(counts.get("leased", 0)),
            dead=int(counts.get("dead", 0)),
            oldest_due_at=oldest,
        )


class SqliteQueue(_SqlQueue):
    """The embedded queue: SQLite's single writer lock serialises claims (BEGIN IMMEDIATE)."""


class PostgresQueue(_SqlQueue):
    """The fleet queue: many workers on many nodes claim disjoint jobs without waiting on each other."""

    _lock_clause = "FOR UPDATE SKIP LOCKED"

    def complete_many(self, conn: Connection, leases: Sequence[Lease]) -> set[int]:
        if not leases:
            return set()
        ids = [lease.job_id for lease in leases]
        rows = conn.execute(_PG_COMPLETE, {"ids": ids, "tokens": [lease.token for lease in leases]})
        return set(ids) - set(rows.scalars())


def queue_for(engine: Engine) -> Queue:
    """The queue implementation for the engine's database."""
    if engine.dialect.name == "postgresql":
        return PostgresQueue(engine)
    if engine.dialect.name == "sqlite":
        return SqliteQueue(engine)
    raise ValueError(f"no queue backend for {engine.dialect.name}")
