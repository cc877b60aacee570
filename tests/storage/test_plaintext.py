"""The no-plaintext check read off the marks: what the repositories write keeps every personal column in
its promised form, and a value that does not (plaintext where a blob belongs, an address in redacted
text, a readable word where a keyed hash belongs) is reported by its column."""

from __future__ import annotations

import time

from sqlalchemy import Engine, update
from support import make_vault

from mailstack.model import Address, EventType, MessageSpec, MessageStatus
from mailstack.storage import (
    SentRecord,
    create_api_key,
    find_api_key,
    insert_messages,
    plaintext_values,
    record_event,
    record_sent,
    save_idempotent_response,
    store_outbox,
    suppress,
    update_message_status,
)
from mailstack.storage.schema import messages, suppressions

ANA = "ana.plain-probe@example.net"


def _fill(engine: Engine) -> int:
    vault = make_vault(engine)
    now = time.time()
    spec = MessageSpec(
        sender=Address("news@example.com"), to=(Address(ANA, "Ana"),), subject="Hi", text="body"
    )
    with engine.begin() as conn:
        record = find_api_key(conn, create_api_key(conn, "test")[0])
        assert record is not None
        ((accepted,),) = insert_messages(conn, record.id, [spec], now=now, vault=vault)
        message_id = accepted.message_id
        record_sent(conn, [SentRecord(message_id, 1, f"250 ok <{ANA}>", "<m@x>")], now=now, vault=vault)
        update_message_status(
            conn, message_id, MessageStatus.SENT, now=now, last_reply=f"250 <{ANA}>", vault=vault
        )
        record_event(
            conn, message_id, EventType.OPEN, {"ip": "192.0.2.1", "agent": "Mozilla"}, now=now, vault=vault
        )
        store_outbox(conn, message_id, "b-1@bounces.example.com", ANA, b"To: ana", now=now, vault=vault)
        save_idempotent_response(conn, record.id, "k1", "h", 200, {"To": [ANA]}, now=now, vault=vault)
        suppress(
            conn,
            ANA,
            scope="global",
            reason=f"550 5.1.1 <{ANA}>: unknown",
            source="hard_bounce",
            now=now,
            vault=vault,
        )
    return message_id


def test_what_the_repositories_store_keeps_every_mark(engine: Engine) -> None:
    _fill(engine)
    with engine.connect() as conn:
        assert plaintext_values(conn) == {}


def test_a_value_out_of_its_form_is_reported_by_its_column(engine: Engine) -> None:
    message_id = _fill(engine)
    with engine.begin() as conn:
        conn.execute(
            update(messages)
            .where(messages.c.id == message_id)
            .values(recipient=ANA.encode(), recipient_index="not a keyed hash")
        )
        conn.execute(update(suppressions).values(reason=f"550 <{ANA}>: unknown"))
    with engine.connect() as conn:
        assert plaintext_values(conn) == {
            "messages.recipient": 1,
            "messages.recipient_index": 1,
            "suppressions.reason": 1,
        }
