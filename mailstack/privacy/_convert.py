"""Sealing the plaintext left by databases older than encryption at rest (migrations ``0006_encryption``
and ``0008_sealed_leftovers``).

The migrations reshape the columns but cannot see the master secret; this step, run by ``mailstack
migrate`` and at ``serve`` start, seals what is still plaintext, in batches that commit one by one (a
crash loses nothing: the next run continues). It is idempotent and cheap once everything is sealed.

Since 0008 it also seals clicked-link URLs (re-keying their counters by a keyed HMAC), automation errors
and clicked URLs left in the clear part of event details, and takes the addresses out of queue jobs' last
errors and suppression reasons written by older versions (those stay readable, without the address).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    MetaData,
    Table,
    delete,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from mailstack.addresses import redact_addresses
from mailstack.keyring import DecryptionError
from mailstack.observability import get_logger
from mailstack.storage import (
    PURPOSE_AUTOMATION_ERROR,
    PURPOSE_IDEMPOTENT_RESPONSE,
    PURPOSE_LAST_REPLY,
    PURPOSE_OUTBOX_DATA,
    PURPOSE_RCPT_TO,
    PURPOSE_RECIPIENT,
    PURPOSE_RECIPIENT_NAME,
    PURPOSE_SPEC,
    PURPOSE_SUPPRESSED_ADDRESS,
    PURPOSE_WEBHOOK_PAYLOAD,
    Vault,
    is_sealed,
    is_sealed_detail,
    later_click,
    link_key,
    normalize_address,
    open_details,
    schema,
    seal_details,
    seal_link_urls,
)
from mailstack.storage.schema import (
    automation_runs,
    contents,
    events,
    idempotency_keys,
    link_counters,
    messages,
    outbox,
    queue_jobs,
    soft_bounces,
    suppressions,
    webhook_deliveries,
)

from ._vacuum import vacuum

__all__ = ["convert_plaintext"]

log = get_logger("mailstack.privacy")


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
        counts["link_counters"] = _link_counters(conn, vault, batch)
        counts["automation_runs"] = _automation_errors(conn, vault, batch)
        counts["queue_jobs"] = _redacted(conn, batch, queue_jobs, queue_jobs.c.last_error)
        counts["suppression_reasons"] = _redacted(conn, batch, suppressions, suppressions.c.reason)
    converted = {table: n for table, n in counts.items() if n}
    if converted:
        # Rewritten rows leave their old plaintext behind (PostgreSQL's dead tuples, SQLite's free pages
        # and WAL): reclaimed now rather than whenever autovacuum gets to it. Once, so every table.
        vacuum(engine, schema.metadata.tables)
    return converted


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
                    recipient=vault.seal(conn, email.encode(), purpose=PURPOSE_RECIPIENT, subject=subject),
                    recipient_index=subject,
                    recipient_domain=email.rpartition("@")[2].lower()[:255],
                    recipient_name=vault.seal(conn, name, purpose=PURPOSE_RECIPIENT_NAME, subject=subject)
                    if name
                    else None,
                    last_reply=reply
                    if reply is None or is_sealed(reply)
                    else vault.seal(conn, _plain(reply), purpose=PURPOSE_LAST_REPLY, subject=None),
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
    return {"spec": vault.seal(conn, raw, purpose=PURPOSE_SPEC, subject=subject)}


def _seal_event(conn: Connection, vault: Vault, row: Any) -> dict[str, Any] | None:
    if is_sealed_detail(row.detail):
        return None
    detail = row.detail
    if isinstance(detail, Mapping) and isinstance(detail.get("sealed"), str):
        # Sealed already, with something personal still beside it (a clicked URL, before 0008): open the
        # sealed part so that everything is sealed again together, nothing overwritten.
        try:
            (detail,) = open_details(conn, vault, [detail])
        except DecryptionError:
            log.warning("an event's sealed detail does not open; sealing what is in the clear", event=row.id)
            detail = {key: value for key, value in detail.items() if key != "sealed"}
    (stored,) = seal_details(conn, vault, [detail])
    return {"detail": stored}


def _not_sealed(column: Any) -> ColumnElement[bool]:
    # A sealed blob starts with the vault's format byte; plaintext (UTF-8 text cast to bytes) never does.
    return func.substr(column, 1, 1) != b"\x02"


def _link_counters(conn: Connection, vault: Vault, batch: int) -> int:
    """Seal each plaintext URL and move its counters to the row of its keyed HMAC (merging, should a
    node of a fleet already running the new code have counted the same link meanwhile)."""
    done = 0
    table = link_counters
    while True:
        rows = conn.execute(select(table).where(_not_sealed(table.c.url)).limit(batch)).all()
        if not rows:
            return done
        urls = [_text(row.url) for row in rows]
        sealed = seal_link_urls(conn, vault, urls)
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table)
        upsert = statement.on_conflict_do_update(
            index_elements=["api_key_id", "campaign", "position", "url_hash"],
            set_={
                "clicked_messages": table.c.clicked_messages + statement.excluded.clicked_messages,
                "click_events": table.c.click_events + statement.excluded.click_events,
                "last_click_at": later_click(table.c.last_click_at, statement.excluded.last_click_at),
            },
        )
        for row, url, (blob, subject) in zip(rows, urls, sealed, strict=True):
            conn.execute(
                delete(table).where(
                    table.c.api_key_id == row.api_key_id,
                    table.c.campaign == row.campaign,
                    table.c.position == row.position,
                    table.c.url_hash == row.url_hash,
                )
            )
            conn.execute(
                upsert,
                {
                    "api_key_id": row.api_key_id,
                    "campaign": row.campaign,
                    "position": row.position,
                    "url_hash": link_key(vault.keyring, url),
                    "url": blob,
                    "subject": subject,
                    "clicked_messages": row.clicked_messages,
                    "click_events": row.click_events,
                    "last_click_at": row.last_click_at,
                },
            )
        conn.commit()
        done += len(rows)


def _automation_errors(conn: Connection, vault: Vault, batch: int) -> int:
    """Seal plaintext automation errors under the trigger recipient's key (shared once it is gone)."""
    done = 0
    while True:
        rows = conn.execute(
            select(
                automation_runs.c.rule_id,
                automation_runs.c.trigger_message_id,
                automation_runs.c.error,
                messages.c.recipient_index,
            )
            .outerjoin(messages, messages.c.id == automation_runs.c.trigger_message_id)
            .where(automation_runs.c.error.is_not(None), _not_sealed(automation_runs.c.error))
            .limit(batch)
        ).all()
        if not rows:
            return done
        for row in rows:
            error = vault.seal(
                conn, _plain(row.error), purpose=PURPOSE_AUTOMATION_ERROR, subject=row.recipient_index
            )
            conn.execute(
                update(automation_runs)
                .where(
                    automation_runs.c.rule_id == row.rule_id,
                    automation_runs.c.trigger_message_id == row.trigger_message_id,
                )
                .values(error=error)
            )
        conn.commit()
        done += len(rows)


def _redacted(conn: Connection, batch: int, table: Table, column: Any) -> int:
    """Take the addresses out of a text column kept readable (older versions quoted them there)."""
    done = 0
    last = 0
    quoting = or_(column.contains("@"), column.contains("%40", autoescape=True))
    while True:
        rows = conn.execute(
            select(table.c.id, column).where(table.c.id > last, quoting).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            return done
        for row_id, text in rows:
            clean = redact_addresses(text)
            if clean != text:
                conn.execute(update(table).where(table.c.id == row_id).values({column.name: clean}))
                done += 1
        conn.commit()
        last = rows[-1].id


def _seal_payload(conn: Connection, vault: Vault, row: Any) -> dict[str, Any] | None:
    if is_sealed(row.payload):
        return None
    return {"payload": vault.seal(conn, _plain(row.payload), purpose=PURPOSE_WEBHOOK_PAYLOAD, subject=None)}


def _seal_outbox(conn: Connection, vault: Vault, row: Any) -> dict[str, Any] | None:
    if is_sealed(row.rcpt_to):
        return None
    rcpt_to = _plain(row.rcpt_to)
    subject = vault.index(rcpt_to.decode())
    return {
        "rcpt_to": vault.seal(conn, rcpt_to, purpose=PURPOSE_RCPT_TO, subject=subject),
        "data": row.data
        if is_sealed(row.data)
        else vault.seal(conn, _plain(row.data), purpose=PURPOSE_OUTBOX_DATA, subject=subject),
    }


def _responses(conn: Connection, vault: Vault) -> int:
    keys = conn.execute(select(idempotency_keys.c.api_key_id, idempotency_keys.c.key)).all()
    done = 0
    for api_key_id, key in keys:
        where = (idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key)
        response = conn.execute(select(idempotency_keys.c.response).where(*where)).scalar_one()
        if not is_sealed(response):
            sealed = vault.seal(conn, _plain(response), purpose=PURPOSE_IDEMPOTENT_RESPONSE, subject=None)
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
                    "address": vault.seal(
                        conn, address.encode(), purpose=PURPOSE_SUPPRESSED_ADDRESS, subject=subject
                    ),
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
