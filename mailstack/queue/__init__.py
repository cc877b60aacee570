"""The durable delivery queue: at-least-once, leased, with retries and dead letters.

One interface (:class:`Queue`), one implementation per backend: SQLite for the embedded default,
PostgreSQL (``FOR UPDATE SKIP LOCKED``) for fleets, Amazon SQS for an AWS fleet. Jobs are enqueued inside
the caller's transaction so that accepting a message and queueing it are one atomic step (on SQS through
an outbox in the database, see :mod:`mailstack.queue._sqs`).
"""

from ._base import Lease, LeaseOwner, Queue, QueueStats
from ._select import queue_for
from ._sql import PostgresQueue, SqliteQueue
from ._sqs import SqsQueue

__all__ = [
    "Lease",
    "LeaseOwner",
    "PostgresQueue",
    "Queue",
    "QueueStats",
    "SqliteQueue",
    "SqsQueue",
    "queue_for",
]
