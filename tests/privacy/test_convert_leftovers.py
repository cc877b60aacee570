"""Upgrading a database at 0007 (sealed since 0006, with plaintext leftovers) to 0008 + ``mailstack
migrate``: link URLs, automation errors and clicked URLs in event details end up sealed, addresses leave
queue jobs' errors and suppression reasons, and every feature still reads what it needs."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, insert, select, text
from support import make_vault, stored_bytes

from mailstack.automation import list_runs
from mailstack.model import Address, MessageSpec
from mailstack.privacy import convert_plaintext
from mailstack.stats import link_clicks
from mailstack.storage import (
    Store,
    create_api_key,
    create_storage_engine,
    insert_messages,
    link_key,
    list_events,
    list_suppressions,
    migrate,
    seal_details,
    seal_link_urls,
    suppress,
)
from mailstack.storage._migrate import alembic_config
from mailstack.storage.schema import events, link_counters, queue_jobs

ADDRESS = "olga.leftover-3b7@example.net"
PERSONAL = "https://shop.example/hi?email=olga.leftover-3b7%40example.net&t=tokenleft-8e0"
SHARED = "https://shop.example/sharedleft-4c2"
IP = "203.0.113.219"
REFUSAL = f"550 5.1.1 <{ADDRESS}>: Recipient address rejected"
MARKERS = ("olga.leftover-3b7", "tokenleft-8e0", "sharedleft-4c2", IP)


def _old_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]  # what 0002..0007 keyed link counters by


@pytest.fixture
def engine_at_0007(db_url: str) -> Iterator[tuple[Engine, int]]:
    """A database at 0007 holding what versions before 0008 left in the clear; yields it and a message."""
    engine = create_storage_engine(db_url)
    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0007_hardening")
        conn.commit()
    vault = make_vault(engine)
    with engine.begin() as conn:
        create_api_key(conn)
        spec = MessageSpec(sender=Address("news@example.com"), to=(Address(ADDRESS),), text="x", campaign="c")
        ((accepted,),) = insert_messages(conn, 1, [spec], now=time.time(), vault=vault)
        message_id = accepted.message_id
        suppress(conn, ADDRESS, scope="global", reason="x", source="hard_bounce", now=0, vault=vault)
        (sealed_ip,) = seal_details(conn, vault, [{"ip": IP}])
        # A click as 0006/0007 stored it: IP sealed, URL in the clear beside it.
        conn.execute(
            insert(events).values(
                message_id=message_id,
                type="click",
                created_at=0,
                detail={**sealed_ip, "url": PERSONAL, "position": 1},
                uid="click-1",
            )
        )
        rows = [
            f"UPDATE suppressions SET reason = '{REFUSAL}'",
            "INSERT INTO queue_jobs (message_id, state, due_at, attempts, last_error) VALUES"
            f" ({message_id}, 'dead', 0, 8, '550 5.1.1 <{ADDRESS}>: user unknown')",
            "INSERT INTO automation_rules (id, api_key_id, name, event_type, campaign, template, active,"
            " created_at) VALUES (1, 1, 'r', 'open', 'c', '{}', true, 0)",
            "INSERT INTO automation_runs (rule_id, trigger_message_id, event_id, created_at, error)"
            f" VALUES (1, {message_id}, 1, 0, '{REFUSAL}')",
            "INSERT INTO link_counters (api_key_id, campaign, position, url_hash, url, clicked_messages,"
            f" click_events) VALUES (1, 'spring', 1, '{_old_hash(PERSONAL)}', '{PERSONAL}', 2, 3)",
            "INSERT INTO link_counters (api_key_id, campaign, position, url_hash, url, clicked_messages,"
            f" click_events) VALUES (1, 'spring', 2, '{_old_hash(SHARED)}', '{SHARED}', 1, 1)",
        ]
        for row in rows:
            conn.execute(text(row))
    try:
        yield engine, message_id
    finally:
        engine.dispose()


def test_migrate_then_convert_seals_the_leftovers_and_keeps_them_working(
    engine_at_0007: tuple[Engine, int],
) -> None:
    engine, message_id = engine_at_0007
    assert any(m.encode() in stored_bytes(engine).lower() for m in MARKERS)  # the test data is in the clear
    migrate(engine)
    vault = make_vault(engine)
    with engine.begin() as conn:
        # A node of the fleet already on the new version counted a click of the same link meanwhile.
        ((blob, subject),) = seal_link_urls(conn, vault, [PERSONAL])
        conn.execute(
            insert(link_counters).values(
                api_key_id=1,
                campaign="spring",
                position=1,
                url_hash=link_key(vault.keyring, PERSONAL),
                url=blob,
                subject=subject,
                clicked_messages=1,
                click_events=1,
            )
        )
    counts = convert_plaintext(engine, vault)
    assert counts == {
        "link_counters": 2,
        "automation_runs": 1,
        "queue_jobs": 1,
        "suppression_reasons": 1,
        "events": 1,
    }
    assert convert_plaintext(engine, vault) == {}  # idempotent
    with engine.connect() as conn:
        assert link_clicks(conn, 1, "spring", store=Store(engine, vault)) == [
            {"URL": PERSONAL, "PositionIndex": 1, "ClickedMessagesCount": 3, "ClickedEventsCount": 4},
            {"URL": SHARED, "PositionIndex": 2, "ClickedMessagesCount": 1, "ClickedEventsCount": 1},
        ]
        keys = {row.url_hash: row.subject for row in conn.execute(select(link_counters))}
        assert keys == {
            link_key(vault.keyring, PERSONAL): vault.index(ADDRESS),
            link_key(vault.keyring, SHARED): None,
        }
        runs = list_runs(conn, vault, 1, 1)
        assert runs is not None and [run.error for run in runs] == [REFUSAL]
        (click,) = [
            detail for kind, _at, detail in list_events(conn, message_id, vault=vault) if kind == "click"
        ]
        assert click == {"url": PERSONAL, "position": 1, "ip": IP}
        stored = conn.execute(select(events.c.detail).where(events.c.type == "click")).scalar_one()
        assert set(json.loads(stored) if isinstance(stored, str) else stored) == {"position", "sealed"}
        last_error = conn.execute(select(queue_jobs.c.last_error)).scalar_one()
        assert last_error == "550 5.1.1 <<address>>: user unknown"
        (entry,) = list_suppressions(conn, vault=vault)
        assert (entry.address, entry.reason) == (ADDRESS, "550 5.1.1 <<address>>: Recipient address rejected")
    data = stored_bytes(engine).lower()
    assert [m for m in MARKERS if m.lower().encode() in data] == []
