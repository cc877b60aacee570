"""Old row versions: after an erasure, and after the one-time sealing of old plaintext, what the database
still keeps on disk (PostgreSQL's dead tuples, SQLite's free pages and WAL) no longer holds the data."""

from __future__ import annotations

import time

from alembic import command
from sqlalchemy import Engine, text
from support import TEST_MASTER_SECRET, make_vault, stored_bytes

from mailstack.keyring import Keyring
from mailstack.model import Address, MessageSpec
from mailstack.privacy import convert_plaintext, erase_subject, vacuum_erased
from mailstack.queue import queue_for
from mailstack.storage import create_api_key, create_storage_engine, find_api_key, insert_messages, migrate
from mailstack.storage._migrate import alembic_config

ANA = "ana.vacuum-61e@example.net"
OLD = "old.vacuum-0d4@example.net"


def test_an_erasure_leaves_no_old_row_version_on_disk(engine: Engine) -> None:
    vault = make_vault(engine)
    # CustomID is the client's, stored as given: a client that puts the address there stores it in clear.
    spec = MessageSpec(
        sender=Address("news@example.com"), to=(Address(ANA),), subject="Hi", text="x", custom_id=f"for {ANA}"
    )
    with engine.begin() as conn:
        record = find_api_key(conn, create_api_key(conn, "test")[0])
        assert record is not None
        (accepted,) = insert_messages(conn, record.id, [spec], now=time.time(), vault=vault)
        queue_for(engine).enqueue(conn, [r.message_id for r in accepted], available_at=0)
    marker = ANA.encode()
    assert marker in stored_bytes(engine, dead_rows=True)
    with engine.begin() as conn:
        erase_subject(conn, vault, Keyring(TEST_MASTER_SECRET), ANA, actor="test")
    assert marker in stored_bytes(engine, dead_rows=True)  # deleted, yet the old row version is still on disk

    assert vacuum_erased(engine)
    assert marker not in stored_bytes(engine, dead_rows=True)


def test_sealing_old_plaintext_leaves_no_plaintext_row_version_on_disk(db_url: str) -> None:
    engine = create_storage_engine(db_url)
    try:
        config = alembic_config()
        with engine.connect() as conn:  # a database from before encryption at rest, holding plaintext
            config.attributes["connection"] = conn
            command.upgrade(config, "0005_privacy")
            conn.commit()
            for statement in (
                "INSERT INTO api_keys (id, public_key, secret_hash, name, created_at)"
                " VALUES (1, 'pk', 'h', 'k', 0)",
                "INSERT INTO contents (id, spec, created_at) VALUES (1, '{}', 0)",
                "INSERT INTO messages (id, uuid, api_key_id, content_id, recipient, kind, sender, status,"
                " created_at, updated_at)"
                f" VALUES (1, 'u-1', 1, 1, '{OLD}', 'to', 'news@example.com', 'sent', 0, 0)",
            ):
                conn.execute(text(statement))
            conn.commit()
        migrate(engine)
        assert convert_plaintext(engine, make_vault(engine))["messages"] == 1
        assert OLD.encode() not in stored_bytes(engine, dead_rows=True)
    finally:
        engine.dispose()
