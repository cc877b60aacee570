"""Sealing the plaintext left by databases older than encryption at rest (migration ``0006_encryption``).

The migration reshapes the columns but cannot see the master secret; this step, run by ``mailstack
migrate`` and at ``serve`` start, seals what is still plaintext, in batches that commit one by one (a
crash loses nothing: the next run continues). It is idempotent and cheap once everything is sealed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mailstack.storage import is_sealed_detail, normalize_address, seal_details
from mailstack.storage.schema import (
    contents,
    events,
    idempotency_keys,
    messages,
    outbox,
    soft_bounces,
    suppressions,
    webhook_deliveries,
)

from ._vault import Vault, is_sealed

__all__ = ["convert_plaintext"]

# Purposes, as mailstack.storage seals them.
_RECIPIENT = "messages.recipient"
_RECIPIENT_NAME = "messages.recipient_name"
_LAST_REPLY = "messages.last_reply"
_SPEC = "contents.spec"
_RCPT_TO = "outbox.rcpt_to"
_OUTBOX_DATA = "outbox.data"
_RESPONSE = "idempotency_keys.response"
_SUPPRESSED = "suppressions.address"
_PAYLOAD = "webhook_deliveries.payload"


def convert_plaintext(engine: Engine, vault: Vault, *, batch: int = 500) -> dict[str, int]:
    """Seal every plaintext value still in the database; returns how many rows each table had."""
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        counts["messages"] = _messages(conn, vault, batch)
        counts["contents"] = _by_id(conn, vault, batch, contents, _seal_content)
        counts["outbox"] = _by_id(conn, vault, batch, outbox, _seal_outbox)
        counts["idempotency_keys"] = _responses(conn, vault)
        counts["webhook_deliveries"] = _by_id(conn, vault, batch, webhook_deliveries, _seal_payload)
        counts["events"] = _by_id(conn, vault, batch, events, _seal_event)
        tables = set(inspect(conn).get_table_names())
        if "suppressions_plain" in tables:
            counts["suppressions"] = _suppressions(conn, vault, batch)
        if "soft_bounces_plain" in tables:
            counts["soft_bounces"] = _soft_bounces(conn, vault, batch)
    converted = {table: n for table, n in counts.items() if n}
    if converted and engine.dialect.name == "sqlite":
        _scrub_sqlite(engine)
    return converted


def _scrub_sqlite(engine: Engine) -> None:
    # Rewritten rows leave their old plaintext in free pages and in the WAL: rebuild the file and
    # empty the log. (PostgreSQL's dead tuples are reclaimed by its own VACUUM, never dumped.)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("VACUUM")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()
    finally:
        raw.close()


def _text(value: Any) -> str:
    return _plain(value).decode()


def _plain(value: Any) -> bytes:
    return bytes(value) if not isinstance(value, str) else value.encode()


def _messages(conn: Connection, vault: Vault, batch: int) -> int:
    done = 0
    while True:
        rows = conn.execute(
            select(messages.c.id, messages.c.recipient, messages.c.recipient_name, messages.c.last_reply)
            .where(messages.c.recipient_index.is_(None))
            .order_by(messages.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return done
        for row in rows:
            email = bytes(_plain(row.recipient)).decode()
            subject = vault.index(email)
            name = _plain(row.recipient_name) if row.recipient_name is not None else b""
            reply = row.last_reply
            conn.execute(
                update(messages)
                .where(messages.c.id == row.id)
                .values(
                    recipient=vault.seal(conn, email.encode(), purpose=_RECIPIENT, subject=subject),
                    recipient_index=subject,
                    recipient_domain=email.rpartition("@")[2].lower()[:255],
                    recipient_name=vault.seal(conn, name, purpose=_RECIPIENT_NAME, subject=subject)
                    if name
                    else None,
                    last_reply=reply
                    if reply is None or is_sealed(reply)
                    else vault.seal(conn, _plain(reply), purpose=_LAST_REPLY, subject=None),
                )
            )
        conn.commit()
        done += len(rows)


def _by_id(conn: Connection, vault: Vault, batch: int, table: Table, seal: Any) -> int:
    done = 0
    last = 0
    while True:
        rows = conn.execute(select(table).where(table.c.id > last).order_by(table.c.id).limit(batch)).all()
        if not rows:
            return done
        for row in rows:
            values = seal(conn, vault, row)
            if values:
                conn.execute(update(table).where(table.c.id == row.id).values(**values))
                done += 1
        conn.commit()
        last = rows[-1].id


def _seal_content(conn: Connection, vault: Vault, row: Any) -> dict[str, Any] | None:
    if is_sealed(row.spec):
        return None
    raw = _plain(row.spec)
    spec = json.loads(raw)
    recipients = [
        r.get("Email", "")
        for part in ("To", "Cc", "Bcc")
        for r in spec.get(part) or []
        if isinstance(r, dict)
    ]
    subject = vault.index(recipients[0]) if len(recipients) == 1 else None
    return {"spec": vault.seal(conn, raw, purpose=_SPEC, subject=subject)}


def _seal_event(conn: Connection, vault: Vault, row: Any) -> dict[str, Any] | None:
    if is_sealed_detail(row.detail):
        return None
    (stored,) = seal_details(conn, vault, [row.detail])
    return {"detail": stored}


def _seal_payload(conn: Connection, vault: Vault, row: Any) -> dict[str, Any] | None:
    if is_sealed(row.payload):
        return None
    return {"payload": vault.seal(conn, _plain(row.payload), purpose=_PAYLOAD, subject=None)}


def _seal_outbox(conn: Connection, vault: Vault, row: Any) -> dict[str, Any] | None:
    if is_sealed(row.rcpt_to):
        return None
    rcpt_to = _plain(row.rcpt_to)
    subject = vault.index(rcpt_to.decode())
    return {
        "rcpt_to": vault.seal(conn, rcpt_to, purpose=_RCPT_TO, subject=subject),
        "data": row.data
        if is_sealed(row.data)
        else vault.seal(conn, _plain(row.data), purpose=_OUTBOX_DATA, subject=subject),
    }


def _responses(conn: Connection, vault: Vault) -> int:
    keys = conn.execute(select(idempotency_keys.c.api_key_id, idempotency_keys.c.key)).all()
    done = 0
    for api_key_id, key in keys:
        where = (idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key)
        response = conn.execute(select(idempotency_keys.c.response).where(*where)).scalar_one()
        if not is_sealed(response):
            sealed = vault.seal(conn, _plain(response), purpose=_RESPONSE, subject=None)
            conn.execute(update(idempotency_keys).where(*where).values(response=sealed))
            done += 1
    conn.commit()
    return done


def _holding(conn: Connection, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=conn)


def _batches(conn: Connection, table: Table, batch: int) -> Iterator[list[Any]]:
    offset = 0
    while True:
        rows = conn.execute(
            select(table).order_by(*table.primary_key.columns).limit(batch).offset(offset)
        ).all()
        if not rows:
            return
        yield list(rows)
        offset += batch


def _insert(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _suppressions(conn: Connection, vault: Vault, batch: int) -> int:
    plain = _holding(conn, "suppressions_plain")
    done = 0
    for rows in _batches(conn, plain, batch):
        values = []
        for row in rows:
            address = normalize_address(_text(row.address))
            subject = vault.index(address)
            values.append(
                {
                    "address_index": subject,
                    "address": vault.seal(conn, address.encode(), purpose=_SUPPRESSED, subject=subject),
                    "scope": row.scope,
                    "reason": row.reason,
                    "source": row.source,
                    "message_id": row.message_id,
                    "created_at": row.created_at,
                    "expires_at": row.expires_at,
                }
            )
        statement = _insert(conn, suppressions).on_conflict_do_nothing(
            index_elements=["address_index", "scope"]
        )
        conn.execute(statement, values)
        done += len(rows)
    plain.drop(conn)
    conn.commit()
    return done


def _soft_bounces(conn: Connection, vault: Vault, batch: int) -> int:
    plain = _holding(conn, "soft_bounces_plain")
    done = 0
    for rows in _batches(conn, plain, batch):
        values = [
            {
                "address_index": vault.index(_text(r.address)),
                "message_id": r.message_id,
                "created_at": r.created_at,
            }
            for r in rows
        ]
        statement = _insert(conn, soft_bounces).on_conflict_do_nothing(
            index_elements=["address_index", "message_id"]
        )
        conn.execute(statement, values)
        done += len(rows)
    plain.drop(conn)
    conn.commit()
    return done
