"""What the dashboard shows, read from the rollups (never from the raw events) and the message tables.

The totals are exactly what ``/v3/REST/statcounters`` answers for the API key (lifetime, message
timing): the page and the API cannot disagree.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, func, or_, select

from mailstack.privacy import Vault
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
from mailstack.storage import PURPOSE_RECIPIENT, PURPOSE_SPEC, list_events, list_suppressions, open_text
from mailstack.storage.schema import COUNTER_COLUMNS, api_keys, contents, messages, stat_counters

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
    conn: Connection, api_key_id: int, *, days: int = 30, now: float | None = None, vault: Vault
) -> dict[str, Any]:
    """Totals and rates, the daily series of the last ``days`` days, campaigns, providers, top links
    (their URLs are sealed: ``vault`` opens them)."""
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
        "Links": link_clicks(conn, api_key_id, vault=vault)[:20],
    }


def search_messages(conn: Connection, api_key_id: int, query: str, *, vault: Vault) -> list[dict[str, Any]]:
    """Messages by MessageID, MessageUUID, Message-ID header or exact recipient address, newest first.

    Recipients are sealed and found by their blind index: only a whole address matches (any case),
    never a part of one.
    """
    text = query.strip()
    if not text or len(text) > 998:
        return []
    conditions = []
    if text.isdigit() and len(text) < 19:
        conditions.append(messages.c.id == int(text))
    if text.startswith("<") or "@" not in text:
        header = text if text.startswith("<") else f"<{text}>"
        conditions.append(messages.c.message_id_header == header)
    conditions.append(messages.c.uuid == text.lower())
    if "@" in text:
        conditions.append(messages.c.recipient_index == vault.index(text))
    rows = conn.execute(
        select(
            messages.c.id,
            messages.c.uuid,
            messages.c.recipient,
            messages.c.sender,
            messages.c.campaign,
            messages.c.status,
            messages.c.created_at,
            messages.c.message_id_header,
            contents.c.spec,
        )
        .join(contents, contents.c.id == messages.c.content_id)
        .where(messages.c.api_key_id == api_key_id, or_(*conditions))
        .order_by(messages.c.id.desc())
        .limit(SEARCH_LIMIT)
    )
    found = []
    for r in rows:
        spec = vault.open_optional(conn, r.spec, purpose=PURPOSE_SPEC)
        found.append((r, open_text(conn, vault, r.recipient, purpose=PURPOSE_RECIPIENT, erased="(erased)"),
                      "" if spec is None else json.loads(spec).get("Subject") or ""))  # fmt: skip
    return [
        {
            "MessageID": r.id,
            "UUID": r.uuid,
            "Recipient": recipient,
            "Sender": r.sender,
            "Subject": subject,
            "Campaign": r.campaign,
            "Status": r.status,
            "CreatedAt": r.created_at,
            "MessageIDHeader": r.message_id_header or "",
        }
        for r, recipient, subject in found
    ]


def message_timeline(
    conn: Connection, api_key_id: int, message_id: int, *, vault: Vault
) -> list[dict[str, Any]] | None:
    """The message's events in order (None when it is not this API key's)."""
    owner = conn.execute(select(messages.c.api_key_id).where(messages.c.id == message_id)).scalar()
    if owner != api_key_id:
        return None
    timeline = []
    for kind, at, detail in list_events(conn, message_id, vault=vault):
        shown = {k: v for k, v in detail.items() if k in _SHOWN and v not in ("", None)}
        timeline.append({"Type": kind, "At": at, "Detail": shown})
    return timeline


# Detail fields worth showing in a timeline (others are internal or repeat the Mailjet sub-object).
_SHOWN = frozenset(
    {"smtp_reply", "url", "position", "agent", "machine", "machine_reason", "proxy", "name", "value",
     "category", "reason", "method", "attempt", "dead_letter", "one_click"}
)  # fmt: skip


def suppression_list(
    conn: Connection, query: str = "", *, limit: int = 100, vault: Vault
) -> list[dict[str, Any]]:
    """Suppressions, newest first; a query finds one exact address (they are stored by blind index)."""
    address = query.strip() or None
    return [entry.to_json() for entry in list_suppressions(conn, address=address, limit=limit, vault=vault)]
