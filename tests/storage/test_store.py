"""The store handle: one engine and its vault, a repository per aggregate, all working in the caller's
transaction."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, Table, func, select
from support import make_store

from mailstack.model import Address, EventType, MessageSpec, MessageStatus
from mailstack.storage import Store, UniqueEvent
from mailstack.storage.schema import events, messages, suppressions

ANA = "Ana.Store-Probe@example.net"


def _spec(*recipients: str) -> MessageSpec:
    return MessageSpec(
        sender=Address("news@example.com"), to=tuple(Address(r) for r in recipients), subject="Hi", text="b"
    )


def _api_key(store: Store) -> int:
    with store.begin() as conn:
        record = store.api_keys.find(conn, store.api_keys.create(conn, "test")[0])
    assert record is not None
    return record.id


def _count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_repositories_commit_or_roll_back_with_the_callers_transaction(engine: Engine) -> None:
    store = make_store(engine)
    api_key_id = _api_key(store)
    with pytest.raises(RuntimeError), store.begin() as conn:
        store.messages.insert(conn, api_key_id, [_spec(ANA)], now=time.time())
        store.suppressions.suppress(conn, ANA, scope="global", reason="test", source="manual", now=1.0)
        raise RuntimeError("the request failed after storing")
    assert (_count(engine, messages), _count(engine, suppressions)) == (0, 0)
    with store.begin() as conn:
        ((accepted,),) = store.messages.insert(conn, api_key_id, [_spec(ANA)], now=time.time())
    with store.connect() as conn:
        found = store.messages.get(conn, accepted.message_id, api_key_id)
        assert found is not None and found.recipient == ANA
        assert store.messages.get(conn, accepted.message_id, api_key_id + 1) is None  # another key's


def test_a_search_finds_a_recipient_by_the_whole_address_only(engine: Engine) -> None:
    store = make_store(engine)
    api_key_id = _api_key(store)
    with store.begin() as conn:
        ((ana,), (_bob,)) = store.messages.insert(
            conn, api_key_id, [_spec(ANA), _spec("bob@example.net")], now=time.time()
        )
    with store.connect() as conn:
        assert [m.id for m in store.messages.find(conn, api_key_id, ANA.upper(), limit=10)] == [
            ana.message_id
        ]
        assert [m.recipient for m in store.messages.find(conn, api_key_id, ANA, limit=10)] == [ANA]
        assert store.messages.find(conn, api_key_id, "example.net", limit=10) == []  # no partial match
        assert store.messages.find(conn, api_key_id + 1, ANA, limit=10) == []  # another key's


def test_an_event_reported_twice_is_recorded_once(engine: Engine) -> None:
    store = make_store(engine)
    api_key_id = _api_key(store)
    with store.begin() as conn:
        ((accepted,),) = store.messages.insert(conn, api_key_id, [_spec(ANA)], now=time.time())
    report = UniqueEvent(accepted.message_id, EventType.DELIVERED, {"smtp_reply": f"250 ok <{ANA}>"}, "uid-1")
    with store.begin() as conn:
        assert store.messages.record_unique_events(conn, [report], now=2.0) == {"uid-1"}
        store.messages.update_statuses_unless(
            conn, [(accepted.message_id, MessageStatus.SENT, "250 ok")], unless=("hardbounced",), now=2.0
        )
    with store.begin() as conn:
        assert store.messages.record_unique_events(conn, [report], now=3.0) == set()
    with store.connect() as conn:
        history = store.messages.events(conn, accepted.message_id)
        outline = store.messages.outlines(conn, [accepted.message_id])[accepted.message_id]
    assert [kind for kind, _at, _detail in history] == ["queued", "delivered"]
    assert history[1][2]["smtp_reply"] == f"250 ok <{ANA}>"  # opened again: it was sealed
    assert (outline.recipient, outline.status) == (ANA, "sent")
    assert _count(engine, events) == 2
