"""The durable delivery queue: at-least-once, leased, with retries and dead letters.

One interface (:class:`Queue`), one implementation per backend: SQLite for the embedded default,
PostgreSQL (``FOR UPDATE SKIP LOCKED``) for fleets. Jobs are enqueued inside the caller's transaction so
that accepting a message and queueing it are one atomic step.
"""

from ._base import Lease, Queue, QueueStats
from ._sql import PostgresQueue, SqliteQueue, queue_for

__all__ = ["Lease", "PostgresQueue", "Queue", "QueueStats", "SqliteQueue", "queue_for"]
