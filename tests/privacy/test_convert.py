"""Upgrading a database written before encryption at rest: nothing is lost, everything ends up sealed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from support import make_vault

from mailstack.privacy import convert_plaintext
from mailstack.storage import (
    create_storage_engine,
    get_idempotent_response,
    get_message,
    list_events,
    list_outbox,
    list_suppressions,
    migrate,
    note_soft_bounce,
)
from mailstack.storage._migrate import alembic_config

ADDRESS = "old.plain-5a0@example.net"
SPEC = {
    "From": {"Email": "news@example.com", "Name": ""},
    "To": [{"Email": ADDRESS, "Name": "Old Plainname"}],
    "Cc": [],
    "Bcc": [],
    "Subject": "oldsubject-77c",
    "TextPart": "oldbody-31d",
}


@pytest.fixture
def old_engine(db_url: str) -> Iterator[Engine]:
    """A database at revision 0005 (before encryption) holding plaintext personal data."""
    engine = create_storage_engine(db_url)
    config = alembic_config()
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005_privacy")
        conn.commit()
        rows = [
            "INSERT INTO api_keys (id, public_key, secret_hash, name, created_at)"
            " VALUES (1, 'pk', 'h', 'k', 0)",
            f"INSERT INTO contents (id, spec, created_at) VALUES (1, '{json.dumps(SPEC)}', 0)",
            "INSERT INTO messages (id, uuid, api_key_id, content_id, recipient, recipient_name, kind, sender,"
            " status, last_reply, created_at, updated_at) VALUES (1, 'u-1', 1, 1,"
            f" '{ADDRESS}', 'Old Plainname', 'to', 'news@example.com', 'sent', '250 ok <{ADDRESS}>', 0, 0)",
            "INSERT INTO events (id, message_id, type, created_at, detail) VALUES"
            f" (1, 1, 'sent', 0, '{json.dumps({'smtp_reply': f'250 ok <{ADDRESS}>'})}')",
            "INSERT INTO outbox (id, message_id, mail_from, rcpt_to, data, created_at) VALUES"
            f" (1, 1, 'b@example.com', '{ADDRESS}', :data, 0)",
            "INSERT INTO suppressions (id, address, scope, reason, source, created_at) VALUES"
            f" (1, '{ADDRESS}', 'global', 'hard', 'hard_bounce', 0)",
            f"INSERT INTO soft_bounces (address, message_id, created_at) VALUES ('{ADDRESS}', 1, 0)",
            "INSERT INTO idempotency_keys (api_key_id, key, request_hash, status_code, response, created_at)"
            f" VALUES (1, 'k1', 'h', 200, '{json.dumps({'Email': ADDRESS})}', 0)",
        ]
        for row in rows:
            conn.execute(text(row), {"data": f"To: {ADDRESS}\r\n\r\noldbody-31d".encode()})
        conn.commit()
    try:
        yield engine
    finally:
        engine.dispose()


def test_migrate_then_convert_keeps_every_row_and_seals_it(old_engine: Engine, tmp_path: Path) -> None:
    migrate(old_engine)
    vault = make_vault(old_engine)
    counts = convert_plaintext(old_engine, vault)
    assert counts == {
        "messages": 1,
        "contents": 1,
        "outbox": 1,
        "idempotency_keys": 1,
        "events": 1,
        "suppressions": 1,
        "soft_bounces": 1,
    }
    assert convert_plaintext(old_engine, vault) == {}  # idempotent
    with old_engine.begin() as conn:
        record = get_message(conn, 1, 1, vault=vault)
        assert record is not None
        assert (record.recipient, record.subject, record.last_reply) == (
            ADDRESS,
            SPEC["Subject"],
            f"250 ok <{ADDRESS}>",
        )
        assert list_events(conn, 1, vault=vault) == [("sent", 0.0, {"smtp_reply": f"250 ok <{ADDRESS}>"})]
        (kept,) = list_outbox(conn, with_data=True, vault=vault)
        assert (kept.rcpt_to, kept.data) == (ADDRESS, f"To: {ADDRESS}\r\n\r\noldbody-31d".encode())
        (entry,) = list_suppressions(conn, vault=vault)
        assert (entry.address, entry.source) == (ADDRESS, "hard_bounce")
        assert note_soft_bounce(conn, ADDRESS, 2, now=1, window=86400, vault=vault) == 2  # the old one counts
        stored = get_idempotent_response(conn, 1, "k1", vault=vault)
        assert stored is not None and stored.body == {"Email": ADDRESS}
    if old_engine.dialect.name == "sqlite":
        # The old plaintext is gone from the file too, not only from the live rows.
        database = Path(old_engine.url.database or "")
        data = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
        for marker in ("old.plain-5a0", "plainname", "oldsubject-77c", "oldbody-31d"):
            assert marker.encode() not in data.lower()
