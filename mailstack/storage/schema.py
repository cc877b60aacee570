"""The tables, for modules that query them directly (queue backends, repositories)."""

from ._schema import (
    api_keys,
    contents,
    dkim_keys,
    events,
    idempotency_keys,
    messages,
    metadata,
    outbox,
    queue_jobs,
)

__all__ = [
    "api_keys",
    "contents",
    "dkim_keys",
    "events",
    "idempotency_keys",
    "messages",
    "metadata",
    "outbox",
    "queue_jobs",
]
