"""The tables, for modules that query them directly (queue backends, repositories)."""

from ._engagement import (
    COUNTER_COLUMNS,
    automation_rules,
    automation_runs,
    dashboard_users,
    event_cursors,
    link_counters,
    message_flags,
    message_links,
    stat_counters,
    webhook_deliveries,
    webhook_endpoints,
)
from ._feedback import log_cursors, relay_queue_ids, soft_bounces, suppressions
from ._privacy import audit_log, consents
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
    "COUNTER_COLUMNS",
    "api_keys",
    "audit_log",
    "automation_rules",
    "automation_runs",
    "consents",
    "contents",
    "dashboard_users",
    "dkim_keys",
    "event_cursors",
    "events",
    "idempotency_keys",
    "link_counters",
    "log_cursors",
    "message_flags",
    "message_links",
    "messages",
    "metadata",
    "outbox",
    "queue_jobs",
    "relay_queue_ids",
    "soft_bounces",
    "stat_counters",
    "suppressions",
    "webhook_deliveries",
    "webhook_endpoints",
]
