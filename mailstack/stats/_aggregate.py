"""Folding events into the statistics rollups.

The aggregator reads the ``events`` table in id order from its cursor and, in one transaction per batch,
adds each event to the hourly and daily counters of its API key and campaign, sets the message's
first-time flags (opened, clicked, bounced...), and moves the cursor. Because the cursor moves in the same
transaction as the counters, every stored event is counted exactly once, even across crashes; events that
arrive twice never reach the table in the first place (their ``uid`` is unique).

Each event counts twice over, once per Mailjet ``CounterTiming``: at the hour it happened ("event") and at
the hour its message was accepted ("message"), so both views are a plain sum over rollup rows.

Clicked URLs are personal data (personalised links quote addresses and tokens): the aggregator opens them
from the events' sealed details and keeps them sealed in ``link_counters``, keyed by a keyed HMAC
(mailstack.storage.link_key, seal_link_urls).
"""

from __future__ import annotations

import functools
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Text, TextClause, insert, select, text, type_coerce

from mailstack.keyring import DecryptionError
from mailstack.model import EventType
from mailstack.observability import get_logger
from mailstack.providers import ProviderClassifier
from mailstack.storage import GAP_GRACE_SECONDS, EventTail, OutageNotice, Store, later_click
from mailstack.storage.schema import (
    COUNTER_COLUMNS,
    events,
    link_counters,
    message_flags,
    message_links,
    messages,
    stat_counters,
)

__all__ = ["CURSOR", "Aggregator", "Flag", "bucket_start"]

log = get_logger("mailstack.stats")

CURSOR = "stats"
HOUR = 3600
DAY = 86_400
MAX_CAMPAIGN = 255


class Flag:
    """Bits of ``message_flags.flags``: what has already happened to a message at least once."""

    PROCESSED = 1 << 0
    SENT = 1 << 1
    DELIVERED = 1 << 2
    DEFERRED = 1 << 3
    HARD = 1 << 4
    SOFT = 1 << 5
    BLOCKED = 1 << 6
    SPAM = 1 << 7
    UNSUB = 1 << 8
    OPENED = 1 << 9
    CLICKED = 1 << 10
    CONVERTED = 1 << 11
    MACHINE_OPENED = 1 << 12
    FAILED = 1 << 13


def bucket_start(timestamp: float, width: int) -> int:
    """The start (Unix seconds, UTC) of the hour or day holding ``timestamp``."""
    return int(timestamp // width) * width


_Key = tuple[int, str, str, str, str, int]
# Messages that share API key, campaign, provider and sending hour share every "message"-timing row.
_Group = tuple[tuple[tuple[int, str, str], ...], int]


class _Message:
    """What the rollups need of a message: its group of rollup rows and when it was accepted."""

    __slots__ = ("created_at", "group", "link_prefixes")

    def __init__(self, group: _Group, link_prefixes: tuple[tuple[int, str], ...], created_at: float) -> None:
        self.group = group
        self.link_prefixes = link_prefixes
        self.created_at = created_at


# Event types whose counting depends on their detail; the others' detail is never decoded.
_NEEDS_DETAIL = frozenset(
    t.value for t in (EventType.OPEN, EventType.CLICK, EventType.FAILED, EventType.BOUNCE)
)
# Plain strings: the hot loop compares event types millions of times.
_SENT, _DELIVERED, _CLICK, _OPEN = (
    t.value for t in (EventType.SENT, EventType.DELIVERED, EventType.CLICK, EventType.OPEN)
)
_FAILED, _BOUNCE = EventType.FAILED.value, EventType.BOUNCE.value


def _detail(raw: object) -> dict[str, Any]:
    # SQLite hands the JSON text over; psycopg decodes json columns itself.
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _bounce_is_hard(detail: dict[str, Any]) -> bool:
    # The feedback code states it as Mailjet does (hard_bounce) or with the classifier's category.
    if "hard_bounce" in detail:
        return bool(detail["hard_bounce"])
    mailjet = detail.get("mailjet")
    if isinstance(mailjet, dict) and "hard_bounce" in mailjet:
        return bool(mailjet["hard_bounce"])
    return detail.get("category") == "hard" or detail.get("hard") is True


@dataclass
class _Batch:
    """Counter deltas of one batch, summed per (message group, event hour) first and expanded to rollup
    rows only once at the end: a batch of thousands of events usually touches a handful of rows."""

    sums: dict[tuple[_Group, int], dict[str, int]] = field(default_factory=lambda: defaultdict(Counter))
    links: dict[tuple[int, str, int, str], list[Any]] = field(default_factory=dict)

    def add(self, message: _Message, event_at: float, deltas: dict[str, int]) -> None:
        row = self.sums[(message.group, int(event_at // HOUR) * HOUR)]
        for name, value in deltas.items():
            row[name] += value

    def rows(self) -> dict[_Key, dict[str, int]]:
        """The deltas of every rollup row touched: both timings, both resolutions, every source."""
        result: dict[_Key, dict[str, int]] = defaultdict(Counter)
        for ((prefixes, sent_hour), event_hour), deltas in self.sums.items():
            slots = (
                ("message", "hour", sent_hour),
                ("message", "day", bucket_start(sent_hour, DAY)),
                ("event", "hour", event_hour),
                ("event", "day", bucket_start(event_hour, DAY)),
            )
            for api_key_id, campaign, provider in prefixes:
                for timing, resolution, slot in slots:
                    row = result[(api_key_id, campaign, provider, timing, resolution, slot)]
                    for name, value in deltas.items():
                        row[name] += value
        return result

    def add_link(
        self, message: _Message, position: int, url: str, digest: str, new_message: bool, at: float
    ) -> None:
        for api_key_id, campaign in message.link_prefixes:
            entry = self.links.setdefault((api_key_id, campaign, position, digest), [url, 0, 0, at])
            entry[1] += int(new_message)
            entry[2] += 1
            entry[3] = max(entry[3], at)  # the latest click, for the retention of personalised links


class Aggregator:
    """Folds new events into the rollups; :meth:`run_once` is one batch, :meth:`run` loops.

    ``sent_is_delivery`` counts the relay's acceptance as delivery, for deployments where nothing reports
    back from further on (the sandbox outbox). ``store`` is the database; its vault opens clicked URLs
    and seals them for the per-link counters.
    """

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = 5000,
        providers: Callable[[str], str] | None = None,
        poll_seconds: float = 1.0,
        sent_is_delivery: bool = False,
        gap_grace_seconds: float = GAP_GRACE_SECONDS,
    ) -> None:
        self._store = store
        self._sent_is_delivery = sent_is_delivery
        self._tail = EventTail(CURSOR, gap_grace_seconds=gap_grace_seconds)
        self._batch_size = batch_size
        self._providers = providers if providers is not None else ProviderClassifier().classify
        self._poll_seconds = poll_seconds
        self._provider_cache: dict[str, str] = {}

    def run(self, stop: threading.Event) -> None:
        """Aggregate until ``stop`` is set; catches up in full batches, then polls."""
        outage = OutageNotice(log, "statistics batch")
        while not stop.is_set():
            try:
                done = self.run_once()
                outage.succeeded()
            except Exception as exc:  # the thread must not die; what failed is retried next round
                outage.failed(exc)
                done = 0
            if done < self._batch_size:
                stop.wait(self._poll_seconds)

    def catch_up(self) -> int:
        """Aggregate everything visible now; returns the number of events folded in."""
        total = 0
        while done := self.run_once():
            total += done
        return total

    def run_once(self) -> int:
        """Fold one batch of events; returns how many events it covered."""
        with self._store.begin() as conn:
            rows = self._tail.read(
                conn,
                self._batch_size,
                [
                    events.c.id,
                    events.c.message_id,
                    events.c.type,
                    events.c.created_at,
                    # Decoded only for the event types whose detail matters (see _detail).
                    type_coerce(events.c.detail, Text).label("detail"),
                ],
            )
            if not rows:
                return 0
            self._fold(conn, rows)
            self._tail.advance(conn, rows[-1].id)
            return len(rows)

    def _messages(self, conn: Connection, ids: Iterable[int]) -> dict[int, _Message]:
        found: dict[int, _Message] = {}
        columns = (
            messages.c.id,
            messages.c.api_key_id,
            messages.c.campaign,
            messages.c.recipient_domain,
            messages.c.created_at,
        )
        for result in _by_ids(conn, messages.c.id, columns, sorted(set(ids))):
            for row in result:
                domain = row.recipient_domain  # the address itself is sealed; its domain is not personal
                provider = self._provider_cache.get(domain)
                if provider is None:
                    provider = self._providers(domain)
                    if len(self._provider_cache) > 100_000:
                        self._provider_cache.clear()
                    self._provider_cache[domain] = provider
                campaign = (row.campaign or "")[:MAX_CAMPAIGN]
                campaigns = ("",) if not campaign else ("", campaign)
                group: _Group = (
                    tuple((row.api_key_id, c, provider) for c in campaigns),
                    bucket_start(row.created_at, HOUR),
                )
                links = tuple((row.api_key_id, c) for c in campaigns)
                found[row.id] = _Message(group, links, row.created_at)
        return found

    def _fold(self, conn: Connection, rows: list[Any]) -> None:
        info = self._messages(conn, (row.message_id for row in rows))
        ids = sorted(info)
        flags: dict[int, int] = {}
        columns = (message_flags.c.message_id, message_flags.c.flags)
        for result in _by_ids(conn, message_flags.c.message_id, columns, ids):
            flags.update({r.message_id: r.flags for r in result})
        changed: dict[int, int] = {}
        clicked_links = self._clicked_links(conn, rows)
        clicks = self._clicks(conn, rows)
        new_links: set[tuple[int, int]] = set()
        batch = _Batch()
        sent_is_delivery = self._sent_is_delivery
        links = self._store.links
        for event_id, message_id, raw_kind, at, raw_detail in rows:
            message = info.get(message_id)
            if message is None:
                continue  # erased since: nothing to attribute it to
            kind = str(raw_kind)
            if kind == _CLICK:
                detail = clicks[event_id]
            else:
                detail = _detail(raw_detail) if kind in _NEEDS_DETAIL else {}
            current = flags.get(message_id, 0)
            delay = at - message.created_at
            deltas, set_bits = _deltas(kind, detail, current, delay)
            if kind == _SENT and sent_is_delivery:
                # Nothing reports back past the relay (the sandbox outbox is the destination).
                extra, extra_bits = _deltas(_DELIVERED, detail, current, delay)
                deltas.update(extra)
                set_bits |= extra_bits
            if kind == _CLICK and not detail.get("machine"):
                position = detail.get("position")
                url = detail.get("url")
                if isinstance(position, int) and isinstance(url, str):
                    key = (message_id, position)
                    first = key not in clicked_links and key not in new_links
                    if first:
                        new_links.add(key)
                    batch.add_link(message, position, url, links.key(url), first, at)
            if deltas:
                batch.add(message, at, deltas)
            if current | set_bits != current:
                changed[message_id] = flags[message_id] = current | set_bits
        self._write(conn, batch, changed, new_links)

    def _clicks(self, conn: Connection, rows: list[Any]) -> dict[int, dict[str, Any]]:
        """The details of the batch's clicks by event id, a person's clicks opened (their URL is sealed)."""
        details = {row[0]: _detail(row[4]) for row in rows if row[2] == _CLICK}
        wanted = [
            event_id
            for event_id, detail in details.items()
            if not detail.get("machine") and "url" not in detail and "sealed" in detail
        ]
        if wanted:
            try:
                opened = self._store.event_details.open(conn, [details[event_id] for event_id in wanted])
            except DecryptionError:
                opened = [self._open_one(conn, event_id, details[event_id]) for event_id in wanted]
            details.update(zip(wanted, opened, strict=True))
        return details

    def _open_one(self, conn: Connection, event_id: int, detail: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._store.event_details.open(conn, [detail])[0]
        except DecryptionError:
            # Altered, or sealed under another master secret: counted, but without its link.
            log.warning("a click's sealed detail does not open; its link is not counted", event_id=event_id)
            return {key: value for key, value in detail.items() if key != "sealed"}

    def _clicked_links(self, conn: Connection, rows: list[Any]) -> set[tuple[int, int]]:
        clicked = sorted({row.message_id for row in rows if row.type == EventType.CLICK})
        found: set[tuple[int, int]] = set()
        columns = (message_links.c.message_id, message_links.c.position)
        for result in _by_ids(conn, message_links.c.message_id, columns, clicked):
            found.update((r.message_id, r.position) for r in result)
        return found

    def _write(
        self,
        conn: Connection,
        batch: _Batch,
        flags: dict[int, int],
        new_links: set[tuple[int, int]],
    ) -> None:
        dialect = _dialect(conn)
        # One executemany per table: every row carries every counter (zeros included) so that a single
        # "add excluded to current" statement serves them all.
        counter_rows = [
            {
                "api_key_id": api_key_id,
                "campaign": campaign,
                "provider": provider,
                "timing": timing,
                "resolution": resolution,
                "slot": slot,
                **{name: deltas.get(name, 0) for name in COUNTER_COLUMNS},
            }
            for (api_key_id, campaign, provider, timing, resolution, slot), deltas in batch.rows().items()
        ]
        if counter_rows:
            statement = dialect.insert(stat_counters)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[c.name for c in stat_counters.primary_key.columns],
                    set_={name: stat_counters.c[name] + statement.excluded[name] for name in COUNTER_COLUMNS},
                ),
                counter_rows,
            )
        # A row's URL is sealed when the row is made; later batches only add to its counters.
        urls = [entry[0] for entry in batch.links.values()]
        sealed = self._store.links.seal_urls(conn, urls) if urls else []
        link_rows = [
            {
                "api_key_id": api_key_id,
                "campaign": campaign,
                "position": position,
                "url_hash": digest,
                "url": blob,
                "subject": subject,
                "clicked_messages": new,
                "click_events": total,
                "last_click_at": last,
            }
            for ((api_key_id, campaign, position, digest), (_url, new, total, last)), (blob, subject) in zip(
                batch.links.items(), sealed, strict=True
            )
        ]
        if link_rows:
            statement = dialect.insert(link_counters)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["api_key_id", "campaign", "position", "url_hash"],
                    set_={
                        "clicked_messages": link_counters.c.clicked_messages
                        + statement.excluded.clicked_messages,
                        "click_events": link_counters.c.click_events + statement.excluded.click_events,
                        "last_click_at": later_click(
                            link_counters.c.last_click_at, statement.excluded.last_click_at
                        ),
                    },
                ),
                link_rows,
            )
        if new_links:
            conn.execute(
                insert(message_links), [{"message_id": m, "position": p} for m, p in sorted(new_links)]
            )
        if flags:
            statement = dialect.insert(message_flags)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["message_id"], set_={"flags": statement.excluded.flags}
                ),
                [{"message_id": m, "flags": f} for m, f in flags.items()],
            )


def _dialect(conn: Connection) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415 - tiny, and only here

    return postgresql if conn.dialect.name == "postgresql" else sqlite


# Event type -> (flag set the first time, the counter of messages, the counter of events).
_SIMPLE: dict[str, tuple[int, str, str | None]] = {
    EventType.QUEUED.value: (Flag.PROCESSED, "processed", None),
    EventType.SENT.value: (Flag.SENT, "sent", None),
    EventType.DELIVERED.value: (Flag.DELIVERED, "delivered", None),
    EventType.DEFERRED.value: (Flag.DEFERRED, "deferred", None),
    EventType.BLOCKED.value: (Flag.BLOCKED, "blocked", None),
    EventType.SPAM.value: (Flag.SPAM, "spam", "spam_events"),
    EventType.UNSUB.value: (Flag.UNSUB, "unsubscribed", "unsub_events"),
    EventType.CONVERSION.value: (Flag.CONVERTED, "converted", "conversion_events"),
}


def _deltas(kind: str, detail: dict[str, Any], flags: int, delay: float) -> tuple[dict[str, int], int]:
    """What one event adds to the counters, and which flags it sets, given the message's flags."""
    deltas: dict[str, int] = {}
    bit = 0
    if kind in _SIMPLE:
        bit, message_counter, event_counter = _SIMPLE[kind]
        if event_counter is not None:
            deltas[event_counter] = 1
        if not flags & bit:
            deltas[message_counter] = 1
    elif kind in (_FAILED, _BOUNCE):
        # A failure is the relay refusing it for good (hard) or running out of retries (soft).
        failed = kind == _FAILED
        hard = not detail.get("dead_letter", False) if failed else _bounce_is_hard(detail)
        bit = Flag.HARD if hard else Flag.SOFT
        if not flags & bit:
            deltas["hard_bounced" if hard else "soft_bounced"] = 1
        if failed:
            bit |= Flag.FAILED
            if not flags & Flag.FAILED:
                deltas["failed"] = 1
    elif kind == _OPEN:
        if detail.get("machine"):
            bit = Flag.MACHINE_OPENED
            deltas["machine_open_events"] = 1
            if not flags & bit:
                deltas["machine_opened"] = 1
        else:
            bit = Flag.OPENED
            deltas["open_events"] = 1
            if not flags & bit:
                deltas["opened"] = 1
                deltas["open_delay_sum"] = max(int(delay), 0)
    elif kind == _CLICK:
        if detail.get("machine"):
            deltas["bot_click_events"] = 1
        else:
            bit = Flag.CLICKED
            deltas["click_events"] = 1
            if not flags & bit:
                deltas["clicked"] = 1
                deltas["click_delay_sum"] = max(int(delay), 0)
    return deltas, bit


def _by_ids(
    conn: Connection, key: Column[Any], columns: Sequence[Column[Any]], ids: Sequence[int]
) -> Iterable[Iterable[Any]]:
    """The rows of ``key``'s table whose ``key`` is one of ``ids``, as one or more results."""
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        yield conn.execute(
            _pg_by_ids(key.table, key.name, tuple(c.name for c in columns)), {"ids": list(ids)}
        )
        return
    for start in range(0, len(ids), 900):  # stay below SQLite's bound-parameter limit
        yield conn.execute(select(*columns).where(key.in_(ids[start : start + 900])))


@functools.cache
def _pg_by_ids(table: Any, key: str, columns: tuple[str, ...]) -> TextClause:
    """PostgreSQL: one statement text whatever the number of ids (an ``IN`` list of more than 50
    parameters is converted again by psycopg for every batch, and the server cannot reuse its plan).
    One index lookup per id (LATERAL, kept a subquery by OFFSET 0) rather than ``= ANY(...)``, whose
    generic plan, made once while the table may be small, can be a sequential scan (see
    mailstack.storage._vault._PG_KEYS)."""
    names = ", ".join(f"t.{c}" for c in columns)
    return text(
        f"SELECT {names} FROM unnest(CAST(:ids AS BIGINT[])) AS k(id) "  # noqa: S608
        f"CROSS JOIN LATERAL (SELECT {', '.join(columns)} FROM {table.name} WHERE {key} = k.id OFFSET 0) AS t"
    )
