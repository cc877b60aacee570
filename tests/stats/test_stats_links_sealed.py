"""Clicked links at rest: sealed in the events and in the per-link counters, still listed by the stats API,
keyed by a keyed HMAC, and gone when the person a link quotes is erased."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import Engine, select
from support import make_store, make_vault, stored_bytes

from mailstack.model import Address, MessageSpec
from mailstack.privacy import erase_subject, export_subject
from mailstack.providers import ProviderClassifier
from mailstack.stats import Aggregator, link_clicks
from mailstack.storage import create_api_key, insert_messages, link_key, list_events
from mailstack.storage.schema import events, link_counters
from mailstack.tracking import TrackedEvent, store_events

AT = 1_772_443_800.0
ANA = "ana.linkprobe-7f2@gmail.com"
# A personalised link quoting the address (percent-encoded, as templates write it) and a token.
PERSONAL = "https://shop.example/welcome?email=ana.linkprobe-7f2%40gmail.com&t=tokenprobe-51c9"
SHARED = "https://shop.example/sharedprobe-e03"
MARKERS = ("ana.linkprobe-7f2", "tokenprobe-51c9", "sharedprobe-e03", "shop.example")


def send(engine: Engine, recipients: list[str]) -> list[int]:
    vault = make_vault(engine)
    with engine.begin() as conn:
        create_api_key(conn)
        spec = MessageSpec(
            sender=Address("news@example.com"),
            to=tuple(Address(r) for r in recipients),
            text="x",
            campaign="spring",
        )
        (accepted,) = insert_messages(conn, 1, [spec], now=AT, vault=vault)
    return [a.message_id for a in accepted]


def click(engine: Engine, message_id: int, position: int, url: str, **extra: Any) -> None:
    detail = {"url": url, "position": position, "ip": "198.51.100.7", "agent": "Firefox", **extra}
    with engine.begin() as conn:
        store_events(
            conn,
            [TrackedEvent(uuid.uuid4().hex, message_id, "click", AT + 60, detail)],
            vault=make_vault(engine),
        )


def aggregate(engine: Engine) -> None:
    Aggregator(
        make_store(engine),
        batch_size=3,
        providers=ProviderClassifier().classify,
        gap_grace_seconds=0,
    ).catch_up()


def links(engine: Engine, campaign: str = "spring") -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return link_clicks(conn, 1, campaign, store=make_store(engine))


def leaks(engine: Engine) -> list[str]:
    data = stored_bytes(engine).lower()
    return [marker for marker in MARKERS if marker.encode() in data]


def test_clicked_urls_are_sealed_at_rest_and_still_listed(engine: Engine) -> None:
    ana, bo = send(engine, [ANA, "bo@outlook.com"])
    click(engine, ana, 1, PERSONAL)
    click(engine, ana, 1, PERSONAL)
    click(engine, ana, 2, SHARED)
    click(engine, bo, 2, SHARED)
    click(engine, bo, 2, SHARED, machine=True)  # a link scanner: not counted
    aggregate(engine)
    expected = [
        {"URL": PERSONAL, "PositionIndex": 1, "ClickedMessagesCount": 1, "ClickedEventsCount": 2},
        {"URL": SHARED, "PositionIndex": 2, "ClickedMessagesCount": 2, "ClickedEventsCount": 2},
    ]
    assert links(engine) == expected
    assert links(engine, "") == expected  # the API key's totals
    # The events keep the URL only sealed, and give it back when read.
    with engine.connect() as conn:
        stored = conn.execute(select(events.c.detail).where(events.c.type == "click")).scalars().all()
        assert stored and all("url" not in detail and "sealed" in detail for detail in stored)
        found = list_events(conn, ana, vault=make_vault(engine))
        urls = {detail["url"] for kind, _at, detail in found if kind == "click"}
    assert urls == {PERSONAL, SHARED}
    assert leaks(engine) == []


def test_link_rows_are_keyed_by_a_keyed_hash_and_name_the_address_they_quote(engine: Engine) -> None:
    (ana,) = send(engine, [ANA])
    click(engine, ana, 1, PERSONAL)
    click(engine, ana, 2, SHARED)
    aggregate(engine)
    vault = make_vault(engine)
    with engine.connect() as conn:
        rows = {r.url_hash: r.subject for r in conn.execute(select(link_counters)) if r.campaign == "spring"}
    # Not a plain digest a guessed URL could be tested against: an HMAC under the master secret's key.
    assert hashlib.sha256(PERSONAL.encode()).hexdigest()[:32] not in rows
    assert rows == {
        link_key(vault.keyring, PERSONAL): vault.index(ANA),
        link_key(vault.keyring, SHARED): None,
    }


def test_erasing_the_quoted_address_deletes_its_links_and_spares_the_others(engine: Engine) -> None:
    ana, bo = send(engine, [ANA, "bo@outlook.com"])
    click(engine, ana, 1, PERSONAL)
    click(engine, bo, 2, SHARED)
    aggregate(engine)
    vault = make_vault(engine)
    with engine.begin() as conn:
        erase_subject(conn, vault, vault.keyring, ANA, actor="test")
    assert links(engine) == [
        {"URL": SHARED, "PositionIndex": 2, "ClickedMessagesCount": 1, "ClickedEventsCount": 1}
    ]
    with engine.connect() as conn:
        assert (
            conn.execute(select(link_counters.c.subject).where(link_counters.c.subject.is_not(None))).all()
            == []
        )


def test_the_export_of_the_quoted_address_lists_its_links_only(engine: Engine) -> None:
    ana, bo = send(engine, [ANA, "bo@outlook.com"])
    click(engine, ana, 1, PERSONAL)
    click(engine, bo, 2, SHARED)
    aggregate(engine)
    vault = make_vault(engine)
    with engine.begin() as conn:
        exported = export_subject(conn, vault, vault.keyring, ANA)
        assert export_subject(conn, vault, vault.keyring, "bo@outlook.com")["links"] == []
    counted = {"position": 1, "url": PERSONAL, "clicked_messages": 1, "click_events": 1}
    # The campaign's row and the API key's totals (campaign ""), as the link-click API reads them.
    assert exported["links"] == [{"campaign": "", **counted}, {"campaign": "spring", **counted}]
