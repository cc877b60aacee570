"""Throttling that holds across a fleet: token buckets per API key, per destination provider (Google,
Microsoft, Yahoo, others — by recipient domain and optionally MX) and per sending IP, plus a daily cap per
sending IP that grows on a warm-up curve.

The decisions are pure functions (``plan``) over state kept in the database (``ThrottleStore``: SQLite or
PostgreSQL), so every worker process on every node shares the same buckets. A message that may not go now
is put back in the queue until its turn comes (its bucket's waitlist spaces retries one token apart),
without counting a delivery attempt. Tokens are taken only by messages that go, so limits are strict.
"""

from ._bucket import (
    BucketState,
    Limit,
    WarmupSchedule,
    next_utc_midnight,
    refill,
    take,
    utc_day,
    wait_seconds,
    waitlist,
)
from ._plan import (
    API_KEY,
    IP,
    PROVIDER,
    WARMUP,
    Decision,
    Item,
    Policy,
    SendingIp,
    Snapshot,
    needs,
    plan,
)
from ._store import PostgresThrottleStore, SqliteThrottleStore, ThrottleStore, throttle_store_for
from ._throttle import (
    Request,
    Throttle,
    classifier_from_settings,
    policy_from_settings,
    throttle_from_settings,
)

__all__ = [
    "API_KEY",
    "IP",
    "PROVIDER",
    "WARMUP",
    "BucketState",
    "Decision",
    "Item",
    "Limit",
    "Policy",
    "PostgresThrottleStore",
    "Request",
    "SendingIp",
    "Snapshot",
    "SqliteThrottleStore",
    "Throttle",
    "ThrottleStore",
    "WarmupSchedule",
    "classifier_from_settings",
    "needs",
    "next_utc_midnight",
    "plan",
    "policy_from_settings",
    "refill",
    "take",
    "throttle_from_settings",
    "throttle_store_for",
    "utc_day",
    "wait_seconds",
    "waitlist",
]
