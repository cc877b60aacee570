"""Repositories: small functions over a :class:`sqlalchemy.Connection`, one per question the service asks.

Callers own transactions, so that accepting a message, recording its event and queueing it commit together.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, insert, literal, or_, select, update

from mailstack.model import Address, Envelope, EventType, MessageSpec, MessageStatus, RecipientKind

from ._feedback import FEEDBACK_STATUSES, active_suppressions, preblocked_detail, suppression_key
from ._schema import api_keys, contents, dkim_keys, events, idempotency_keys, messages, outbox

# --- API keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: int
    public_key: str
    name: str
    secret_hash: str
    disabled: bool


def hash_secret(secret: str) -> str:
    # API secrets are 256-bit random values, so a fast hash is enough (brute force is hopeless) and keeps
    # per-request authentication cheap; passwords chosen by people get argon2 elsewhere.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(conn: Connection, name: str = "default") -> tuple[str, str]:
    """Create an API key; returns ``(public_key, secret)``. Only the secret's hash is stored."""
    public_key = secrets.token_hex(16)
    secret = secrets.token_hex(32)
    conn.execute(
        insert(api_keys).values(
            public_key=public_key, secret_hash=hash_secret(secret), name=name, created_at=time.time()
        )
    )
    return public_key, secret


def find_api_key(conn: Connection, public_key: str) -> ApiKeyRecord | None:
    row = conn.execute(select(api_keys).where(api_keys.c.public_key == public_key)).first()
    if row is None:
        return None
    return ApiKeyRecord(row.id, row.public_key, row.name, row.secret_hash, row.disabled)


def secret_matches(record: ApiKeyRecord, secret: str) -> bool:
    return hmac.compare_digest(record.secret_hash, hash_secret(secret))


# --- DKIM keys --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DkimKeyRow:
    domain: str
    selector: str
    algorithm: str
    encrypted_pem: bytes
    created_at: float
    activates_at: float
    active: bool


def add_dkim_key(
    conn: Connection, domain: str, selector: str, algorithm: str, encrypted_pem: bytes, *, activates_at: float
) -> None:
    conn.execute(
        insert(dkim_keys).values(
            domain=domain.lower(),
            selector=selector,
            algorithm=algorithm,
            private_key=encrypted_pem,
            created_at=time.time(),
            activates_at=activates_at,
        )
    )


def list_dkim_keys(
    conn: Connection, *, domain: str | None = None, active_only: bool = True
) -> list[DkimKeyRow]:
    query = select(dkim_keys).order_by(dkim_keys.c.domain, dkim_keys.c.created_at, dkim_keys.c.id)
    if domain is not None:
        query = query.where(dkim_keys.c.domain == domain.lower())
    if active_only:
        query = query.where(dkim_keys.c.active.is_(True))
    return [
        DkimKeyRow(r.domain, r.selector, r.algorithm, r.private_key, r.created_at, r.activates_at, r.active)
        for r in conn.execute(query)
    ]


# --- messages ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptedRecipient:
    email: str
    kind: RecipientKind
    message_id: int
    message_uuid: str
    blocked: bool = False  # suppressed: stored with a "blocked" event, never to be queued


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: int
    uuid: str
    recipient: str
    kind: str
    sender: str
    status: str
    attempts: int
    custom_id: str
    campaign: str
    message_id_header: str | None
    last_reply: str | None
    created_at: float
    updated_at: float
    subject: str
    attachment_count: int


def _recipients(spec: MessageSpec) -> Iterable[tuple[Address, RecipientKind]]:
    for address in spec.to:
        yield address, RecipientKind.TO
    for address in spec.cc:
        yield address, RecipientKind.CC
    for address in spec.bcc:
        yield address, RecipientKind.BCC


def insert_messages(
    conn: Connection, api_key_id: int, batch: Sequence[MessageSpec], *, now: float
) -> list[list[AcceptedRecipient]]:
    """Store each message's content once and one row per recipient; record a ``queued`` event for each.

    Returns, per input message, its recipients with their new MessageID and MessageUUID.
    """
    content_ids = (
        conn.execute(
            insert(contents).returning(contents.c.id, sort_by_parameter_order=True),
            [{"spec": spec.to_json(), "created_at": now} for spec in batch],
        )
        .scalars()
        .all()
    )
    rows: list[dict[str, Any]] = []
    shape: list[list[tuple[str, RecipientKind, str]]] = []
    for spec, content_id in zip(batch, content_ids, strict=True):
        recipients = []
        for address, kind in _recipients(spec):
            message_uuid = str(uuid.uuid4())
            recipients.append((address.email, kind, message_uuid))
            rows.append(
                {
                    "uuid": message_uuid,
                    "api_key_id": api_key_id,
                    "content_id": content_id,
                    "recipient": address.email,
                    "recipient_name": address.name,
                    "kind": kind.value,
                    "sender": spec.sender.email,
                    "custom_id": spec.custom_id,
                    "campaign": spec.campaign,
                    "status": MessageStatus.QUEUED.value,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        shape.append(recipients)
    # Suppressed recipients are stored (the client gets its MessageID, as with Mailjet's preblocked mail)
    # but blocked: checked here so that every way in (API, SMTP ingress) gets the same rule.
    blocked = active_suppressions(
        conn, {(row["recipient"], row["sender"].rpartition("@")[2]) for row in rows}, now=now
    )
    entries = [blocked.get(suppression_key(row["recipient"], row["sender"])) for row in rows]
    for row, entry in zip(rows, entries, strict=True):
        if entry is not None:
            row["status"] = MessageStatus.BLOCKED.value
    ids = (
        conn.execute(insert(messages).returning(messages.c.id, sort_by_parameter_order=True), rows)
        .scalars()
        .all()
    )
    conn.execute(
        insert(events),
        [
            {"message_id": m, "type": EventType.QUEUED.value, "created_at": now, "detail": {}}
            if entry is None
            else {
                "message_id": m,
                "type": EventType.BLOCKED.value,
                "created_at": now,
                "detail": preblocked_detail(entry),
            }
            for m, entry in zip(ids, entries, strict=True)
        ],
    )
    result: list[list[AcceptedRecipient]] = []
    position = 0
    for recipients in shape:
        accepted = []
        for email, kind, message_uuid in recipients:
            accepted.append(
                AcceptedRecipient(email, kind, ids[position], message_uuid, entries[position] is not None)
            )
            position += 1
        result.append(accepted)
    return result


@dataclass(frozen=True, slots=True)
class PendingMessage:
    envelope: Envelope
    status: str
    created_at: float


def load_envelopes(conn: Connection, message_ids: Sequence[int]) -> dict[int, PendingMessage]:
    """The envelopes to deliver, with each message's current status, by MessageID."""
    if not message_ids:
        return {}
    query = (
        select(
            messages.c.id,
            messages.c.uuid,
            messages.c.recipient,
            messages.c.recipient_name,
            messages.c.kind,
            messages.c.status,
            messages.c.created_at,
            messages.c.content_id,
            contents.c.spec,
        )
        .join(contents, contents.c.id == messages.c.content_id)
        .where(messages.c.id.in_(message_ids))
    )
    specs: dict[int, MessageSpec] = {}
    result: dict[int, PendingMessage] = {}
    for row in conn.execute(query):
        spec = specs.get(row.content_id)
        if spec is None:
            spec = specs[row.content_id] = MessageSpec.from_json(row.spec)
        envelope = Envelope(
            message_id=row.id,
            message_uuid=row.uuid,
            recipient=Address(row.recipient, row.recipient_name),
            kind=RecipientKind(row.kind),
            spec=spec,
        )
        result[row.id] = PendingMessage(envelope, row.status, row.created_at)
    return result


def update_message_status(
    conn: Connection,
    message_id: int,
    status: MessageStatus,
    *,
    now: float,
    attempts: int | None = None,
    last_reply: str | None = None,
    message_id_header: str | None = None,
) -> None:
    """Record a delivery outcome. A status that reports what came back after delivery (a bounce, a
    complaint, an unsubscribe) is kept, with its reply: the feedback loop may have read the destination's
    verdict from Postfix's log before the worker committed the relay's acceptance of the same message.
    """
    settled = messages.c.status.in_(FEEDBACK_STATUSES)
    values: dict[str, Any] = {
        "status": case((settled, messages.c.status), else_=literal(status.value)),
        "updated_at": now,
    }
    if attempts is not None:
        values["attempts"] = attempts
    if last_reply is not None:
        values["last_reply"] = case((settled, messages.c.last_reply), else_=literal(last_reply[:2000]))
    if message_id_header is not None:
        values["message_id_header"] = message_id_header
    conn.execute(update(messages).where(messages.c.id == message_id).values(**values))


@dataclass(frozen=True, slots=True)
class SentRecord:
    """One message the relay accepted, as :func:`record_sent` stores it."""

    message_id: int
    attempts: int
    reply: str
    message_id_header: str | None


def record_sent(conn: Connection, sent: Sequence[SentRecord], *, now: float) -> None:
    """Statuses and ``sent`` events of a whole batch in two statements (the delivery hot path).

    Same rule as :func:`update_message_status`: a status the feedback loop already set is kept.
    """
    if not sent:
        return
    # Plain comparisons, not IN: an expanding IN parameter cannot go through executemany.
    settled = or_(*(messages.c.status == literal(str(status)) for status in sorted(FEEDBACK_STATUSES)))
    statement = (
        update(messages)
        .where(messages.c.id == bindparam("b_id"))
        .values(
            status=case((settled, messages.c.status), else_=literal(MessageStatus.SENT.value)),
            updated_at=now,
            attempts=bindparam("b_attempts"),
            last_reply=case((settled, messages.c.last_reply), else_=bindparam("b_reply")),
            message_id_header=func.coalesce(bindparam("b_header"), messages.c.message_id_header),
        )
    )
    conn.execute(
        statement,
        [
            {
                "b_id": s.message_id,
                "b_attempts": s.attempts,
                "b_reply": s.reply[:2000],
                "b_header": s.message_id_header,
            }
            for s in sent
        ],
    )
    conn.execute(
        insert(events),
        [
            {
                "message_id": s.message_id,
                "type": EventType.SENT.value,
                "created_at": now,
                "detail": {"smtp_reply": s.reply},
            }
            for s in sent
        ],
    )


def record_event(
    conn: Connection, message_id: int, event_type: EventType, detail: dict[str, Any], *, now: float
) -> None:
    conn.execute(
        insert(events).values(message_id=message_id, type=event_type.value, created_at=now, detail=detail)
    )


def get_message(conn: Connection, message_id: int, api_key_id: int) -> MessageRecord | None:
    """A message, only if it belongs to the API key asking."""
    row = conn.execute(
        select(messages, contents.c.spec)
        .join(contents, contents.c.id == messages.c.content_id)
        .where(messages.c.id == message_id, messages.c.api_key_id == api_key_id)
    ).first()
    if row is None:
        return None
    spec = row.spec
    return MessageRecord(
        id=row.id,
        uuid=row.uuid,
        recipient=row.recipient,
        kind=row.kind,
        sender=row.sender,
        status=row.status,
        attempts=row.attempts,
        custom_id=row.custom_id,
        campaign=row.campaign,
        message_id_header=row.message_id_header,
        last_reply=row.last_reply,
        created_at=row.created_at,
        updated_at=row.updated_at,
        subject=spec.get("Subject", ""),
        attachment_count=len(spec.get("Attachments", [])) + len(spec.get("InlinedAttachments", [])),
    )


def message_api_key(conn: Connection, message_id: int) -> int | None:
    """The API key a message was sent with."""
    return conn.execute(select(messages.c.api_key_id).where(messages.c.id == message_id)).scalar()


def list_events(conn: Connection, message_id: int) -> list[tuple[str, float, dict[str, Any]]]:
    rows = conn.execute(
        select(events.c.type, events.c.created_at, events.c.detail)
        .where(events.c.message_id == message_id)
        .order_by(events.c.id)
    )
    return [(r.type, r.created_at, r.detail) for r in rows]


# --- idempotency ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdempotentResponse:
    request_hash: str
    status_code: int
    body: Any


def get_idempotent_response(conn: Connection, api_key_id: int, key: str) -> IdempotentResponse | None:
    row = conn.execute(
        select(idempotency_keys).where(
            idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key
        )
    ).first()
    if row is None:
        return None
    return IdempotentResponse(row.request_hash, row.status_code, row.response)


def save_idempotent_response(
    conn: Connection, api_key_id: int, key: str, request_hash: str, status_code: int, body: Any, *, now: float
) -> None:
    """Insert the response; raises IntegrityError when a concurrent request with the key won the race."""
    conn.execute(
        insert(idempotency_keys).values(
            api_key_id=api_key_id,
            key=key,
            request_hash=request_hash,
            status_code=status_code,
            response=body,
            created_at=now,
        )
    )


# --- sandbox outbox ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    message_id: int
    mail_from: str
    rcpt_to: str
    created_at: float
    data: bytes | None


def store_outbox(
    conn: Connection, message_id: int, mail_from: str, rcpt_to: str, data: bytes, *, now: float
) -> None:
    conn.execute(
        insert(outbox).values(
            message_id=message_id, mail_from=mail_from, rcpt_to=rcpt_to, data=data, created_at=now
        )
    )


def list_outbox(
    conn: Connection,
    *,
    api_key_id: int | None = None,
    message_id: int | None = None,
    limit: int = 100,
    with_data: bool = False,
) -> list[OutboxItem]:
    columns = [outbox.c.id, outbox.c.message_id, outbox.c.mail_from, outbox.c.rcpt_to, outbox.c.created_at]
    if with_data:
        columns.append(outbox.c.data)
    query = select(*columns).order_by(outbox.c.id.desc()).limit(limit)
    if api_key_id is not None:
        query = query.join(messages, messages.c.id == outbox.c.message_id).where(
            messages.c.api_key_id == api_key_id
        )
    if message_id is not None:
        query = query.where(outbox.c.message_id == message_id)
    return [
        OutboxItem(r.id, r.message_id, r.mail_from, r.rcpt_to, r.created_at, r.data if with_data else None)
        for r in conn.execute(query)
    ]
