from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection


@dataclass(frozen=True, slots=True)
class Lease:
    """A job handed to one worker until ``expires_at``; ``token`` proves the lease is still ours."""

    job_id: int
    message_id: int
    attempts: int  # including this one
    token: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class LeaseOwner:
    """The holder of leases: a node (stable across restarts) and its incarnation (one per start)."""

    node: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    ready: int
    leased: int
    dead: int
    oldest_due_at: float | None


class Queue(Protocol):
    """What the pipeline needs from a queue backend."""

    def enqueue(self, conn: Connection, message_ids: Sequence[int], *, available_at: float) -> None:
        """Queue one job per message inside the caller's transaction."""

    def lease(
        self, limit: int, lease_seconds: float, *, now: float, owner: LeaseOwner | None = None
    ) -> list[Lease]:
        """Take up to ``limit`` due jobs (ready, or leased by a worker that stopped renewing), held by
        ``owner`` when given."""

    def renew(self, owner: LeaseOwner, lease_seconds: float, *, now: float) -> int:
        """Extend every lease ``owner`` holds to ``now + lease_seconds``; returns how many."""

    def reclaim(self, owner: LeaseOwner, *, now: float) -> int:
        """Make the leases of ``owner``'s node held by its earlier incarnations due at once (the node
        restarted: nobody works on them); returns how many."""

    def owned(self, conn: Connection, leases: Sequence[Lease]) -> set[int]:
        """The job ids of ``leases`` still held under their token (not finished, not taken over)."""

    def complete_many(self, conn: Connection, leases: Sequence[Lease]) -> set[int]:
        """:meth:`complete` for a batch; returns the job ids whose lease was lost."""

    def complete(self, conn: Connection, lease: Lease) -> bool:
        """Remove a finished job; False when the lease was lost (another worker owns the job now)."""

    def retry(self, conn: Connection, lease: Lease, *, available_at: float, error: str) -> bool:
        """Put the job back for another attempt at ``available_at``."""

    def postpone(self, conn: Connection, lease: Lease, *, available_at: float) -> bool:
        """Put the job back untried until ``available_at`` (throttled): the attempt is not counted and the
        last error is kept. False when the lease was lost."""

    def dead(self, conn: Connection, lease: Lease, *, error: str) -> bool:
        """Move the job to the dead letters; it is kept for inspection and never leased again."""

    def release(self, leases: Sequence[Lease], *, now: float) -> None:
        """Give back leases not worked on (shutdown) so they are due at once, attempt not counted."""

    def flush(self) -> None:
        """Carry out what this thread's committed outcomes left for the backend to do (SQS deletes its
        messages only after the commit); nothing for the SQL backends, whose jobs are rows."""

    def stats(self, *, now: float) -> QueueStats:
        """Counts per state, for metrics and health."""
