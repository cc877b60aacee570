"""Data-subject rights: export everything held about an address, or erase it (GDPR articles 15 and 17).

Both find the subject by its blind index, open what is sealed with the vault, and leave an audit entry
(who, when, counts; never the address). Erasure deletes what can be deleted, crypto-shreds the rest by
deleting the subject's data key, and keeps one hashed suppression so the address is never mailed again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from mailstack.keyring import Keyring
from mailstack.storage import (
    GLOBAL_SCOPE,
    PURPOSE_LAST_REPLY,
    PURPOSE_OUTBOX_DATA,
    PURPOSE_RCPT_TO,
    PURPOSE_RECIPIENT,
    PURPOSE_RECIPIENT_NAME,
    PURPOSE_SPEC,
    list_events,
    list_suppressions,
    normalize_address,
    suppress,
)
from mailstack.storage.schema import (
    automation_runs,
    consents,
    contents,
    events,
    messages,
    outbox,
    queue_jobs,
    relay_queue_ids,
    soft_bounces,
    suppressions,
)

from ._audit import list_audit, record_audit
from ._blind import address_index
from ._consent import list_consents
from ._vault import Vault

__all__ = ["ErasureReport", "erase_subject", "export_subject"]

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What :func:`erase_subject` removed; counts only, so it can go into the audit trail."""

    messages_deleted: int
    messages_in_flight: int  # being delivered right now: left to finish, unreadable once the key is gone
    events_deleted: int
    outbox_deleted: int
    contents_deleted: int
    contents_redacted: int  # shared with other recipients: the address was taken out of To/Cc/Bcc
    suppressions_replaced: int
    soft_bounces_deleted: int
    consents_deleted: int
    key_shredded: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the CLI's output, the audit entry's detail)."""
        return asdict(self)


def _text(vault: Vault, conn: Connection, blob: bytes | None, purpose: str) -> str | None:
    plain = vault.open_optional(conn, blob, purpose=purpose)
    return None if plain is None else plain.decode("utf-8", "replace")


def export_subject(
    conn: Connection, vault: Vault, keyring: Keyring, address: str, *, actor: str = "system:export"
) -> dict[str, Any]:
    """Everything held about ``address``, opened, as JSON-serialisable data; the export is audited."""
    subject = address_index(keyring, address)
    rows = conn.execute(
        select(messages, contents.c.spec)
        .join(contents, contents.c.id == messages.c.content_id)
        .where(messages.c.recipient_index == subject)
        .order_by(messages.c.id)
    ).all()
    exported_messages = []
    for row in rows:
        spec = vault.open_optional(conn, row.spec, purpose=PURPOSE_SPEC)
        kept = conn.execute(
            select(outbox.c.rcpt_to, outbox.c.data, outbox.c.created_at).where(outbox.c.message_id == row.id)
        ).all()
        exported_messages.append(
            {
                "id": row.id,
                "uuid": row.uuid,
                "recipient": _text(vault, conn, row.recipient, PURPOSE_RECIPIENT),
                "recipient_name": _text(vault, conn, row.recipient_name, PURPOSE_RECIPIENT_NAME) or "",
                "kind": row.kind,
                "sender": row.sender,
                "custom_id": row.custom_id,
                "campaign": row.campaign,
                "status": row.status,
                "attempts": row.attempts,
                "message_id_header": row.message_id_header,
                "last_reply": _text(vault, conn, row.last_reply, PURPOSE_LAST_REPLY),
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "content": None if spec is None else json.loads(spec),
                "events": [
                    {"type": kind, "at": at, "detail": detail}
                    for kind, at, detail in list_events(conn, row.id, vault=vault)
                ],
                "outbox": [
                    {
                        "rcpt_to": _text(vault, conn, item.rcpt_to, PURPOSE_RCPT_TO),
                        "data": _text(vault, conn, item.data, PURPOSE_OUTBOX_DATA),
                        "created_at": item.created_at,
                    }
                    for item in kept
                ],
            }
        )
    bounces = conn.execute(
        select(soft_bounces.c.message_id, soft_bounces.c.created_at)
        .where(soft_bounces.c.address_index == subject)
        .order_by(soft_bounces.c.created_at)
    ).all()
    result: dict[str, Any] = {
        "address": normalize_address(address),
        "subject": subject,
        "exported_at": time.time(),
        "messages": exported_messages,
        "suppressions": [
            entry.to_json()
            for entry in list_suppressions(
                conn, address=address, include_expired=True, limit=10_000, vault=vault
            )
        ],
        "soft_bounces": [{"message_id": b.message_id, "at": b.created_at} for b in bounces],
        "consents": [record.as_dict() for record in list_consents(conn, vault, address)],
        "audit": [
            {"at": e.at, "actor": e.actor, "action": e.action, "detail": e.detail}
            for e in list_audit(conn, subject=subject, limit=10_000)
        ],
    }
    counts = {key: len(result[key]) for key in ("messages", "suppressions", "soft_bounces", "consents")}
    record_audit(conn, actor=actor, action="export", subject=subject, detail=counts)
    return result


def erase_subject(
    conn: Connection, vault: Vault, keyring: Keyring, address: str, *, actor: str
) -> ErasureReport:
    """Erase ``address``: delete its mail (undelivered mail is cancelled), events, sandbox copies,
    suppressions, soft bounces and consents; take it out of contents shared with others; delete its
    data key (whatever is left anywhere, backups included, becomes unreadable); keep one hashed
    ``erasure`` suppression so that it is never mailed again. Runs in the caller's transaction.
    """
    subject = address_index(keyring, address)
    now = time.time()
    rows = conn.execute(
        select(messages.c.id, messages.c.content_id).where(messages.c.recipient_index == subject)
    ).all()
    leased = set(
        conn.execute(
            select(queue_jobs.c.message_id).where(
                queue_jobs.c.message_id.in_([r.id for r in rows]), queue_jobs.c.state == "leased"
            )
        ).scalars()
    )
    # A message a worker holds right now is left to finish (deleting it under the worker would fail its
    # batch); once the key is gone, nothing of it can be read.
    ids = [r.id for r in rows if r.id not in leased]
    content_ids = sorted({r.content_id for r in rows if r.id not in leased})
    events_deleted = outbox_deleted = 0
    for chunk in _chunks(ids):
        conn.execute(delete(queue_jobs).where(queue_jobs.c.message_id.in_(chunk)))
        events_deleted += conn.execute(delete(events).where(events.c.message_id.in_(chunk))).rowcount
        outbox_deleted += conn.execute(delete(outbox).where(outbox.c.message_id.in_(chunk))).rowcount
        conn.execute(delete(automation_runs).where(automation_runs.c.trigger_message_id.in_(chunk)))
        conn.execute(delete(relay_queue_ids).where(relay_queue_ids.c.message_id.in_(chunk)))
        # message_flags and message_links go with their message (ON DELETE CASCADE).
        conn.execute(delete(messages).where(messages.c.id.in_(chunk)))
    contents_deleted, contents_redacted = _contents(conn, vault, content_ids, normalize_address(address))
    replaced = conn.execute(delete(suppressions).where(suppressions.c.address_index == subject)).rowcount
    suppress(
        conn,
        address,
        scope=GLOBAL_SCOPE,
        reason="erased at the data subject's request",
        source="erasure",
        now=now,
        replace=True,
        vault=vault,
    )
    bounces = conn.execute(delete(soft_bounces).where(soft_bounces.c.address_index == subject)).rowcount
    consents_deleted = conn.execute(delete(consents).where(consents.c.subject == subject)).rowcount
    shredded = vault.shred_subject(conn, subject)
    report = ErasureReport(
        messages_deleted=len(ids),
        messages_in_flight=len(leased),
        events_deleted=events_deleted,
        outbox_deleted=outbox_deleted,
        contents_deleted=contents_deleted,
        contents_redacted=contents_redacted,
        suppressions_replaced=replaced,
        soft_bounces_deleted=bounces,
        consents_deleted=consents_deleted,
        key_shredded=shredded,
    )
    record_audit(conn, actor=actor, action="erase", subject=subject, detail=report.as_dict(), now=now)
    return report


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    return [list(ids[i : i + _CHUNK]) for i in range(0, len(ids), _CHUNK)]


def _contents(conn: Connection, vault: Vault, content_ids: Sequence[int], address: str) -> tuple[int, int]:
    """Delete contents nobody else's message uses; take the address out of the others."""
    deleted = redacted = 0
    for chunk in _chunks(content_ids):
        used = set(
            conn.execute(
                select(messages.c.content_id)
                .where(messages.c.content_id.in_(chunk))
                .group_by(messages.c.content_id)
                .having(func.count() > 0)
            ).scalars()
        )
        unused = [c for c in chunk if c not in used]
        if unused:
            deleted += conn.execute(delete(contents).where(contents.c.id.in_(unused))).rowcount
        for content_id in sorted(used):
            sealed = conn.execute(select(contents.c.spec).where(contents.c.id == content_id)).scalar_one()
            plain = vault.open_optional(conn, sealed, purpose=PURPOSE_SPEC)
            if plain is None:
                continue
            spec = json.loads(plain)
            for part in ("To", "Cc", "Bcc"):
                entries = spec.get(part)
                if isinstance(entries, list):
                    spec[part] = [
                        e
                        for e in entries
                        if not (isinstance(e, dict) and normalize_address(str(e.get("Email", ""))) == address)
                    ]
            # Shared with other recipients: sealed again under the day's shared key.
            text = json.dumps(spec, separators=(",", ":"), ensure_ascii=False).encode()
            resealed = vault.seal(conn, text, purpose=PURPOSE_SPEC, subject=None)
            conn.execute(update(contents).where(contents.c.id == content_id).values(spec=resealed))
            redacted += 1
    return deleted, redacted
