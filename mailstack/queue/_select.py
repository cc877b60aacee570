from __future__ import annotations

from sqlalchemy import Engine

from mailstack.config import QueueSettings

from ._base import Queue
from ._sql import queue_for as sql_queue_for
from ._sqs import SqsQueue


def queue_for(engine: Engine, settings: QueueSettings | None = None) -> Queue:
    """The queue the settings choose: the database's own (SQLite or PostgreSQL, by the engine) by default,
    Amazon SQS with the database as its outbox when ``backend = "sqs"``."""
    if settings is not None and settings.backend == "sqs":
        return SqsQueue(engine, settings.sqs_url, dead_letter_url=settings.sqs_dead_letter_url or None)
    return sql_queue_for(engine)
