"""What the dashboard shows, read from the rollups (never from the raw events) and the message tables.

The totals are exactly what ``/v3/REST/statcounters`` answers for the API key (lifetime, message
timing): the page and the API cannot disagree.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, func, select

from mailstack.stats import (
    DAY,
    Counters,
    StatsQuery,
    counters,
    counters_by_provider,
    counters_by_slot,
    esp_json,
    link_clicks,
    statcounter_json,
)
from mailstack.storage import Store
from mailstack.storage.schema import COUNTER_COLUMNS, api_keys, stat_counters

__all__ = ["api_key_list", "message_timeline", "overview", "search_messages", "suppression_list"]

MAX_DAYS = 366
SEARCH_LIMIT = 50


def api_key_list(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(api_keys.c.id, api_keys.c.name, api_keys.c.public_key).order_by(api_keys.c.id))
    return [{"ID": r.id, "Name": r.name, "PublicKey": r.public_key} for r in rows]


def _campaigns(conn: Connection, api_key_id: int) -> list[dict[str, Any]]:
    sums = [func.coalesce(func.sum(stat_counters.c[name]), 0).label(name) for name in COUNTER_COLUMNS]
    rows = conn.execute(
        select(stat_counters.c.campaign, func.max(stat_counters.c.slot).label("last"), *sums)
        .where(
            stat_counters.c.api_key_id == api_key_id,
            stat_counters.c.campaign != "",
            stat_counters.c.timing == "message",
            stat_counters.c.resolution == "day",
        )
        .group_by(stat_counters.c.campaign)
        .order_by(func.max(stat_counters.c.slot).desc(), stat_counters.c.campaign)
        .limit(200)
    )
    result = []
    for row in rows:
        values = Counters({name: int(getattr(row, name)) for name in COUNTER_COLUMNS})
        entry = statcounter_json(values, api_key_id=api_key_id, source_id=row.campaign, timeslice=None)
        entry["LastSentDay"] = time.strftime("%Y-%m-%d", time.gmtime(int(row.last)))
        result.append(entry)
    return result


def overview(
    conn: Connection, api_key_id: int, *, days: int = 30, now: float | None = None, store: Store
) -> dict[str, Any]:
    """Totals and rates, the daily series of the last ``days`` days, campaigns, providers, top links
    (their URLs are sealed: the store opens them)."""
    days = max(1, min(days, MAX_DAYS))
    today = int((time.time() if now is None else now) // DAY * DAY)
    start, end = today - (days - 1) * DAY, today + DAY
    totals = counters(conn, StatsQuery(api_key_id))
    series = counters_by_slot(conn, StatsQuery(api_key_id, "", "event", start, end), "day")
    return {
        "APIKeyID": api_key_id,
        "Totals": statcounter_json(totals, api_key_id=api_key_id, source_id=api_key_id, timeslice=None),
        "Series": [
            {
                "Day": time.strftime("%Y-%m-%d", time.gmtime(slot)),
                "Processed": values["processed"],
                "Delivered": values["delivered"],
                "Opened": values["opened"],
                "Clicked": values["clicked"],
                "Bounced": values["hard_bounced"] + values["soft_bounced"],
            }
            for slot, values in series
        ],
        "Campaigns": _campaigns(conn, api_key_id),
        "Providers": [
            esp_json(provider, values)
            for provider, values in counters_by_provider(conn, StatsQuery(api_key_id)).items()
        ],
        "Links": link_clicks(conn, api_key_id, store=store)[:20],
    }


def search_messages(conn: Connection, api_key_id: int, query: str, *, store: Store) -> list[dict[str, Any]]:
    """Messages by MessageID, MessageUUID, Message-ID header or exact recipient address, newest first
    (see :func:`mailstack.storage.find_messages`)."""
    return [
        {
            "MessageID": m.id,
            "UUID": m.uuid,
            "Recipient": m.recipient,
            "Sender": m.sender,
            "Subject": m.subject,
            "Campaign": m.campaign,
            "Status": m.status,
            "CreatedAt": m.created_at,
            "MessageIDHeader": m.message_id_header or "",
        }
        for m in store.messages.find(conn, api_key_id, query, limit=SEARCH_LIMIT)
    ]


def message_timeline(
    conn: Connection, api_key_id: int, message_id: int, *, store: Store
) -> list[dict[str, Any]] | None:
    """The message's events in order (None when it is not this API key's)."""
    if store.messages.api_key_of(conn, message_id) != api_key_id:
        return None
    timeline = []
    for kind, at, detail in store.messages.events(conn, message_id):
        shown = {k: v for k, v in detail.items() if k in _SHOWN and v not in ("", None)}
        timeline.append({"Type": kind, "At": at, "Detail": shown})
    return timeline


# Detail fields worth showing in a timeline (others are internal or repeat the Mailjet sub-object).
_SHOWN = frozenset(
    {"smtp_reply", "url", "position", "agent", "machine", "machine_reason", "proxy", "name", "value",
     "category", "reason", "method", "attempt", "dead_letter", "one_click"}
)  # fmt: skip


def suppression_list(
    conn: Connection, query: str = "", *, limit: int = 100, store: Store
) -> list[dict[str, Any]]:
    """Suppressions, newest first; a query finds one exact address (they are stored by blind index)."""
    address = query.strip() or None
    return [entry.to_json() for entry in store.suppressions.list(conn, address=address, limit=limit)]
