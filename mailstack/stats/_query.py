"""Reading the rollups: Mailjet's ``statcounters``, ``statistics/recipient-esp`` and ``link-click``.

Each query sums rollup rows; none touches the events table, so its cost depends on the time range and
the number of providers, not on how many events there were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from mailstack.providers import PROVIDERS
from mailstack.storage import Store
from mailstack.storage.schema import COUNTER_COLUMNS, stat_counters

from ._aggregate import DAY, HOUR, bucket_start

__all__ = [
    "Counters",
    "StatsQuery",
    "counters",
    "counters_by_provider",
    "counters_by_slot",
    "esp_json",
    "link_clicks",
    "statcounter_json",
]


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """Which rollup rows to sum. ``campaign`` "" means every campaign of the API key.

    ``timing`` is "message" or "event"; ``start``/``end`` bound the slots (Unix seconds, end excluded).
    """

    api_key_id: int
    campaign: str = ""
    timing: str = "message"
    start: int | None = None
    end: int | None = None


class Counters(dict[str, int]):
    """Counter name -> value, every name of :data:`COUNTER_COLUMNS` present."""

    @classmethod
    def zero(cls) -> Counters:
        return cls({name: 0 for name in COUNTER_COLUMNS})


def _sums() -> list[Any]:
    return [func.coalesce(func.sum(stat_counters.c[name]), 0).label(name) for name in COUNTER_COLUMNS]


def _where(query: Any, spec: StatsQuery, resolution: str) -> Any:
    query = query.where(
        stat_counters.c.api_key_id == spec.api_key_id,
        stat_counters.c.campaign == spec.campaign,
        stat_counters.c.timing == spec.timing,
        stat_counters.c.resolution == resolution,
    )
    if spec.start is not None:
        query = query.where(stat_counters.c.slot >= spec.start)
    if spec.end is not None:
        query = query.where(stat_counters.c.slot < spec.end)
    return query


def _resolution_for_range(spec: StatsQuery) -> str:
    # Day rows are 24 times fewer; they serve any range that starts and ends on day boundaries.
    aligned = all(t is None or t % DAY == 0 for t in (spec.start, spec.end))
    return "day" if aligned else "hour"


def _counters(row: Any) -> Counters:
    return Counters({name: int(getattr(row, name)) for name in COUNTER_COLUMNS})


def counters(conn: Connection, spec: StatsQuery) -> Counters:
    """The totals over the range."""
    row = conn.execute(_where(select(*_sums()), spec, _resolution_for_range(spec))).one()
    return _counters(row)


def counters_by_provider(conn: Connection, spec: StatsQuery) -> dict[str, Counters]:
    """The totals over the range per mailbox provider (every provider present, zeros included)."""
    query = _where(select(stat_counters.c.provider, *_sums()), spec, _resolution_for_range(spec))
    found = {row.provider: _counters(row) for row in conn.execute(query.group_by(stat_counters.c.provider))}
    return {provider: found.get(provider, Counters.zero()) for provider in PROVIDERS}


def counters_by_slot(conn: Connection, spec: StatsQuery, resolution: str) -> list[tuple[int, Counters]]:
    """One entry per hour or day of ``[start, end)``, in order, empty slots included."""
    if spec.start is None or spec.end is None:
        raise ValueError("a time series needs both ends of its range")
    width = HOUR if resolution == "hour" else DAY
    query = _where(select(stat_counters.c.slot, *_sums()), spec, resolution)
    found = {row.slot: _counters(row) for row in conn.execute(query.group_by(stat_counters.c.slot))}
    first = bucket_start(spec.start, width)
    return [
        (slot, found.get(slot, Counters.zero()))
        for slot in range(first, spec.end, width)
        if slot + width > spec.start
    ]


def link_clicks(
    conn: Connection, api_key_id: int, campaign: str = "", *, store: Store
) -> list[dict[str, Any]]:
    """Clicks per link, in link order: Mailjet's ``statistics/link-click`` entries.

    The URLs are stored sealed (the store opens them); a link whose data subject was erased meanwhile
    is listed with an empty URL.
    """
    entries = [
        {
            "URL": link.url or "",
            "PositionIndex": link.position,
            "ClickedMessagesCount": link.clicked_messages,
            "ClickedEventsCount": link.click_events,
        }
        for link in store.links.clicks(conn, api_key_id, campaign)
    ]
    # Sealed values have no useful order in the database: link order, then the URL, as before.
    return sorted(entries, key=lambda entry: (entry["PositionIndex"], entry["URL"]))


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _delay(total: int, count: int) -> int:
    return math.floor(total / count) if count else 0


def statcounter_json(
    values: Counters, *, api_key_id: int, source_id: str | int, timeslice: int | None
) -> dict[str, Any]:
    """One ``Data`` entry of Mailjet's ``/statcounters``, plus mailstack's extra counters.

    Mailjet's names keep their meaning: ``MessageSentCount`` is what the destination accepted (Postfix's
    delivery status; in sandbox mode, the outbox's acceptance), ``Total`` every message processed, and
    ``MessageRelayedCount`` what the relay took. The ``Message*`` counters count messages (an event
    arriving twice, or a second open, adds nothing); the ``Event*`` counters count events.
    Privacy-proxy opens and scanner clicks are left out of the opened/clicked counters and reported
    as ``*MachineOpened*`` / ``EventBotClickedCount``.
    """
    processed = values["processed"]
    delivered = values["delivered"]
    return {
        "APIKeyID": api_key_id,
        "SourceID": source_id,
        "Timeslice": "" if timeslice is None else _iso(timeslice),
        "Total": processed,
        "MessageQueuedCount": max(processed - values["sent"] - values["blocked"] - values["failed"], 0),
        "MessageSentCount": delivered,
        "MessageDeferredCount": values["deferred"],
        "MessageHardBouncedCount": values["hard_bounced"],
        "MessageSoftBouncedCount": values["soft_bounced"],
        "MessageBlockedCount": values["blocked"],
        "MessageSpamCount": values["spam"],
        "MessageUnsubscribedCount": values["unsubscribed"],
        "MessageOpenedCount": values["opened"],
        "MessageClickedCount": values["clicked"],
        "MessageWorkFlowExitedCount": 0,
        "EventOpenedCount": values["open_events"],
        "EventClickedCount": values["click_events"],
        "EventSpamCount": values["spam_events"],
        "EventUnsubscribedCount": values["unsub_events"],
        "EventWorkflowExitedCount": 0,
        "EventOpenDelay": _delay(values["open_delay_sum"], values["opened"]),
        "EventClickDelay": _delay(values["click_delay_sum"], values["clicked"]),
        # mailstack's additions.
        "MessageRelayedCount": values["sent"],
        "MessageConvertedCount": values["converted"],
        "EventConversionCount": values["conversion_events"],
        "MessageMachineOpenedCount": values["machine_opened"],
        "EventMachineOpenedCount": values["machine_open_events"],
        "EventBotClickedCount": values["bot_click_events"],
        "OpenRate": _ratio(values["opened"], delivered),
        "ClickRate": _ratio(values["clicked"], delivered),
        "ClickThroughRate": _ratio(values["clicked"], values["opened"]),
        "ConversionRate": _ratio(values["converted"], delivered),
        "HardBouncedRate": _ratio(values["hard_bounced"], processed),
        "SoftBouncedRate": _ratio(values["soft_bounced"], processed),
        "BlockedRate": _ratio(values["blocked"], processed),
        "SpamRate": _ratio(values["spam"], delivered),
        "UnsubscribedRate": _ratio(values["unsubscribed"], delivered),
        "DeliveredRate": _ratio(delivered, processed),
    }


def esp_json(provider: str, values: Counters) -> dict[str, Any]:
    """One entry of Mailjet's ``/statistics/recipient-esp`` (its field names and rate definitions)."""
    delivered = values["delivered"]
    processed = values["processed"]
    return {
        "ESPName": provider,
        "AttemptedMessagesCount": processed,
        "DeliveredMessagesCount": delivered,
        "OpenedMessagesCount": values["opened"],
        "ClickedMessagesCount": values["clicked"],
        "DeferredMessagesCount": values["deferred"],
        "SoftBouncedMessagesCount": values["soft_bounced"],
        "HardBouncedMessagesCount": values["hard_bounced"],
        "BlockedMessagesCount": values["blocked"],
        "UnsubscribedMessagesCount": values["unsubscribed"],
        "SpamReportsCount": values["spam"],
        "MachineOpenedMessagesCount": values["machine_opened"],
        "OpenRate": _ratio(values["opened"], delivered),
        "ClickThroughRate": _ratio(values["clicked"], values["opened"]),
        "SoftBouncedRate": _ratio(values["soft_bounced"], processed),
        "HardBouncedRate": _ratio(values["hard_bounced"], processed),
        "UnsubscribedRate": _ratio(values["unsubscribed"], delivered),
        "SpamReportsRate": _ratio(values["spam"], delivered),
        "DeferredRate": _ratio(values["deferred"], processed),
    }


def _iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
