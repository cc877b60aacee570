"""The aggregator and the rollup queries, on SQLite and PostgreSQL: counted once, per source and timing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from support import make_store, make_vault

from mailstack.model import Address, MessageSpec
from mailstack.providers import ProviderClassifier
from mailstack.stats import (
    Aggregator,
    StatsQuery,
    counters,
    counters_by_provider,
    counters_by_slot,
    link_clicks,
)
from mailstack.storage import create_api_key, insert_messages
from mailstack.storage.schema import event_cursors, events
from mailstack.tracking import TrackedEvent, store_events

DAY1 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC).timestamp()  # a Monday, 09:30 UTC
DAY2 = DAY1 + 86_400
DAY3 = DAY1 + 2 * 86_400


def aggregator(engine: Engine, **kwargs: Any) -> Aggregator:
    # Every event of these tests is committed before aggregating: holes in PostgreSQL's ids (an event
    # stored twice consumes a sequence value) are final, no need to wait for them.
    kwargs.setdefault("gap_grace_seconds", 0)
    return Aggregator(make_store(engine), batch_size=7, providers=ProviderClassifier().classify, **kwargs)


def messages(engine: Engine, recipients: list[str], campaign: str = "", at: float = DAY1) -> list[int]:
    vault = make_vault(engine)
    with engine.begin() as conn:
        if conn.execute(select(event_cursors)).first() is None and not _has_key(conn):
            create_api_key(conn)
        spec = MessageSpec(
            sender=Address("news@example.com"),
            to=tuple(Address(r) for r in recipients),
            text="x",
            campaign=campaign,
        )
        (accepted,) = insert_messages(conn, 1, [spec], now=at, vault=vault)
    return [a.message_id for a in accepted]


def _has_key(conn: Any) -> bool:
    from mailstack.storage.schema import api_keys  # noqa: PLC0415

    return conn.execute(select(api_keys.c.id)).first() is not None


def read(engine: Engine, query: Any, *args: Any) -> Any:
    with engine.connect() as conn:
        return query(conn, *args)


def record(
    engine: Engine, message_id: int, kind: str, at: float, uid: str | None = None, **detail: Any
) -> None:
    vault = make_vault(engine)
    with engine.begin() as conn:
        store_events(conn, [TrackedEvent(uid or uuid.uuid4().hex, message_id, kind, at, detail)], vault=vault)


def test_counts_each_thing_once_per_message_and_once_per_event(engine: Engine) -> None:
    a, b, c = messages(engine, ["ana@gmail.com", "bo@hotmail.fr", "cy@corp.example"], campaign="spring")
    for m in (a, b, c):
        record(engine, m, "sent", DAY1 + 60)
    record(engine, a, "delivered", DAY1 + 70)
    record(engine, b, "delivered", DAY1 + 70)
    # a: two human opens, one Apple proxy open, two clicks on link 1 and one on link 2, a scanner click.
    record(engine, a, "open", DAY1 + 600, "open-a-1")
    record(engine, a, "open", DAY1 + 600, "open-a-1")  # the same event arriving twice
    record(engine, a, "open", DAY2, machine=True, proxy="apple")
    record(engine, a, "open", DAY2 + 60)
    record(engine, a, "click", DAY2 + 120, position=1, url="https://shop.example/1")
    record(engine, a, "click", DAY2 + 130, position=1, url="https://shop.example/1")
    record(engine, a, "click", DAY2 + 140, position=2, url="https://shop.example/2")
    record(engine, a, "click", DAY2 + 150, position=2, url="https://shop.example/2", machine=True)
    record(engine, a, "conversion", DAY2 + 400, name="purchase")
    # b: only a privacy-proxy open; then unsubscribes and complains. c: hard bounce, reported twice.
    record(engine, b, "open", DAY1 + 100, machine=True, proxy="apple")
    record(engine, b, "unsub", DAY3, "unsub-b")
    record(engine, b, "spam", DAY3)
    record(engine, c, "bounce", DAY1 + 90, mailjet={"hard_bounce": True})
    record(engine, c, "bounce", DAY1 + 95, mailjet={"hard_bounce": True})
    agg = aggregator(engine)
    # 3 queued + 19 above, one of which was the same event twice and stored once.
    assert agg.catch_up() == 21
    spec = StatsQuery(1, "spring", "message")
    totals = read(engine, counters, spec)
    expected = {
        "processed": 3,
        "sent": 3,
        "delivered": 2,
        "hard_bounced": 1,
        "opened": 1,
        "open_events": 2,
        "machine_opened": 2,
        "machine_open_events": 2,
        "clicked": 1,
        "click_events": 3,
        "bot_click_events": 1,
        "unsubscribed": 1,
        "unsub_events": 1,
        "spam": 1,
        "spam_events": 1,
        "converted": 1,
        "conversion_events": 1,
        "open_delay_sum": 600,  # first human open 10 minutes after sending
        "click_delay_sum": 86_400 + 120,
    }
    assert {k: v for k, v in totals.items() if v} == expected
    # The API key's totals hold the campaign's (and would hold messages of other campaigns too).
    assert read(engine, counters, StatsQuery(1, "", "message")) == totals
    # Aggregating again changes nothing: every event was folded in exactly once.
    assert agg.catch_up() == 0
    assert read(engine, counters, spec) == totals
    # A new aggregator (a restart) starts from the stored cursor, not from the beginning.
    assert aggregator(engine).catch_up() == 0
    by_provider = read(engine, counters_by_provider, spec)
    assert list(by_provider) == ["google", "microsoft", "yahoo", "other"]
    assert (by_provider["google"]["opened"], by_provider["microsoft"]["unsubscribed"]) == (1, 1)
    assert by_provider["other"]["hard_bounced"] == 1 and by_provider["yahoo"]["processed"] == 0
    with engine.connect() as conn:
        links = link_clicks(conn, 1, "spring", store=make_store(engine))
    assert links == [
        {
            "URL": "https://shop.example/1",
            "PositionIndex": 1,
            "ClickedMessagesCount": 1,
            "ClickedEventsCount": 2,
        },
        {
            "URL": "https://shop.example/2",
            "PositionIndex": 2,
            "ClickedMessagesCount": 1,
            "ClickedEventsCount": 1,
        },
    ]


def test_message_and_event_timing_place_counts_differently(engine: Engine) -> None:
    (m,) = messages(engine, ["ana@gmail.com"], campaign="c")
    record(engine, m, "sent", DAY1 + 10)
    record(engine, m, "open", DAY2 + 3600)
    record(engine, m, "open", DAY3 + 7200)
    aggregator(engine).catch_up()
    start = int(DAY1 // 86_400 * 86_400)
    by_message = read(
        engine, counters_by_slot, StatsQuery(1, "c", "message", start, start + 3 * 86_400), "day"
    )
    by_event = read(engine, counters_by_slot, StatsQuery(1, "c", "event", start, start + 3 * 86_400), "day")
    assert [slot for slot, _ in by_message] == [start, start + 86_400, start + 2 * 86_400]
    assert [v["open_events"] for _, v in by_message] == [2, 0, 0]  # everything on the sending day
    assert [v["open_events"] for _, v in by_event] == [0, 1, 1]  # when it happened
    assert [v["opened"] for _, v in by_event] == [0, 1, 0]  # the first open, once
    hours = read(
        engine,
        counters_by_slot,
        StatsQuery(1, "c", "event", start + 86_400, start + 86_400 + 12 * 3600),
        "hour",
    )
    assert len(hours) == 12 and sum(v["open_events"] for _, v in hours) == 1
    hour_of_open = int((DAY2 + 3600) // 3600 * 3600)
    assert dict((slot, v["open_events"]) for slot, v in hours)[hour_of_open] == 1
    # A range that is not whole days is summed from the hourly rows.
    part = read(engine, counters, StatsQuery(1, "c", "event", hour_of_open, hour_of_open + 1800))
    assert part["open_events"] == 1


def test_sent_counts_as_delivered_when_nothing_reports_back(engine: Engine) -> None:
    (m,) = messages(engine, ["ana@gmail.com"])
    record(engine, m, "sent", DAY1)
    aggregator(engine, sent_is_delivery=True).catch_up()
    totals = read(engine, counters, StatsQuery(1))
    assert (totals["sent"], totals["delivered"]) == (1, 1)


def test_failures_are_bounces_and_dead_letters_soft(engine: Engine) -> None:
    hard, soft = messages(engine, ["a@gmail.com", "b@gmail.com"])
    record(engine, hard, "failed", DAY1, dead_letter=False)
    record(engine, soft, "failed", DAY1, dead_letter=True)
    record(engine, soft, "bounce", DAY1, category="soft")  # the DSN of the same failure
    aggregator(engine).catch_up()
    totals = read(engine, counters, StatsQuery(1))
    assert (totals["hard_bounced"], totals["soft_bounced"], totals["failed"]) == (1, 1, 2)


@pytest.mark.postgres
def test_an_event_committed_late_with_a_lower_id_is_not_skipped(pg_url: str) -> None:
    from mailstack.storage import create_storage_engine, migrate  # noqa: PLC0415

    engine = create_storage_engine(pg_url)
    migrate(engine)
    try:
        (m,) = messages(engine, ["ana@gmail.com"])
        agg = aggregator(engine, gap_grace_seconds=3600)
        agg.catch_up()  # the queued event
        with engine.connect() as conn:
            last = conn.execute(select(events.c.id).order_by(events.c.id.desc())).scalar_one()
        # Id last+2 commits first; last+1 is still in flight (a slower transaction).
        with engine.begin() as conn:
            conn.execute(
                insert(events).values(id=last + 2, message_id=m, type="open", created_at=DAY1, detail={})
            )
        assert agg.catch_up() == 0  # it waits for the hole
        with engine.begin() as conn:
            conn.execute(
                insert(events).values(id=last + 1, message_id=m, type="sent", created_at=DAY1, detail={})
            )
        assert agg.catch_up() == 2
        totals = read(engine, counters, StatsQuery(1))
        assert (totals["sent"], totals["open_events"]) == (1, 1)
        # A hole that never fills (a rolled-back insert) is passed once the grace is over.
        with engine.begin() as conn:
            conn.execute(
                insert(events).values(id=last + 4, message_id=m, type="open", created_at=DAY1, detail={})
            )
        impatient = aggregator(engine, gap_grace_seconds=0)
        assert impatient.catch_up() == 1
    finally:
        engine.dispose()
