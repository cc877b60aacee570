"""Messages: the contents accepted, one row per recipient, their events and delivery outcomes.

Callers own transactions, so that accepting a message, recording its event and queueing it commit
together. Recipients, names, contents and replies are sealed (see :class:`~mailstack.storage.Vault`).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    TextClause,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect

from mailstack import model
from mailstack.model import Address, Envelope, EventType, MessageSpec, MessageStatus, RecipientKind

from ._details import open_details, seal_details
from ._dialect import dialect_insert
from ._schema import contents, events, messages
from ._sealing import open_text
from ._suppressions import active_suppressions, preblocked_detail, suppression_key
from ._vault import Vault

__all__ = [
    "FEEDBACK_STATUSES",
    "PURPOSE_LAST_REPLY",
    "PURPOSE_RECIPIENT",
    "PURPOSE_RECIPIENT_NAME",
    "PURPOSE_SPEC",
    "AcceptedRecipient",
    "FoundMessage",
    "MessageOutline",
    "MessageRecord",
    "Messages",
    "PendingMessage",
    "SentRecord",
    "UniqueEvent",
    "find_messages",
    "get_message",
    "insert_messages",
    "list_events",
    "load_envelopes",
    "message_api_key",
    "message_outlines",
    "recipient_domain",
    "record_event",
    "record_sent",
    "record_unique_events",
    "set_message_status",
    "update_message_status",
    "update_statuses_unless",
]

# What each sealed column holds: bound into its ciphertext, so a blob cannot be moved to another column.
PURPOSE_RECIPIENT = "messages.recipient"
PURPOSE_RECIPIENT_NAME = "messages.recipient_name"
PURPOSE_LAST_REPLY = "messages.last_reply"
PURPOSE_SPEC = "contents.spec"
# Message statuses that report what came back after delivery; the delivery path never overwrites them.
FEEDBACK_STATUSES = tuple(sorted(s.value for s in model.FEEDBACK_STATUSES))


def recipient_domain(email: str) -> str:
    """The domain of an address, lower-case: kept in plaintext (it names no one) for stats and pacing."""
    return email.rpartition("@")[2].strip().rstrip(">").lower()[:255]


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
    conn: Connection, api_key_id: int, batch: Sequence[MessageSpec], *, now: float, vault: Vault
) -> list[list[AcceptedRecipient]]:
    """Store each message's content once and one row per recipient; record a ``queued`` event for each.

    Recipients, names and contents are sealed: each recipient's under their own data key, a content
    under its only recipient's key (or the day's shared key when it has several), so that erasing a
    person crypto-shreds their copies. Returns, per input message, its recipients with their new
    MessageID and MessageUUID.
    """
    per_spec = [[(a, k, vault.index(a.email)) for a, k in _recipients(spec)] for spec in batch]
    content_subjects = [group[0][2] if len(group) == 1 else None for group in per_spec]
    keys = vault.data_keys_for(conn, {i for group in per_spec for _a, _k, i in group} | set(content_subjects))
    content_ids = _insert_contents(
        conn,
        [
            vault.seal_with(
                keys[subject],
                json.dumps(spec.to_json(), separators=(",", ":"), ensure_ascii=False).encode(),
                purpose=PURPOSE_SPEC,
            )
            for spec, subject in zip(batch, content_subjects, strict=True)
        ],
        now=now,
    )
    rows: list[dict[str, Any]] = []
    plain_recipients: list[str] = []
    shape: list[list[tuple[str, RecipientKind, str]]] = []
    for spec, content_id, group in zip(batch, content_ids, per_spec, strict=True):
        recipients = []
        for address, kind, index in group:
            message_uuid = str(uuid.uuid4())
            recipients.append((address.email, kind, message_uuid))
            plain_recipients.append(address.email)
            key = keys[index]
            rows.append(
                {
                    "uuid": message_uuid,
                    "api_key_id": api_key_id,
                    "content_id": content_id,
                    "recipient": vault.seal_with(key, address.email.encode(), purpose=PURPOSE_RECIPIENT),
                    "recipient_index": index,
                    "recipient_domain": recipient_domain(address.email),
                    "recipient_name": (
                        vault.seal_with(key, address.name.encode(), purpose=PURPOSE_RECIPIENT_NAME)
                        if address.name
                        else None
                    ),
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
        conn,
        {
            (email, row["sender"].rpartition("@")[2])
            for email, row in zip(plain_recipients, rows, strict=True)
        },
        now=now,
        vault=vault,
    )
    entries = [
        blocked.get(suppression_key(email, row["sender"]))
        for email, row in zip(plain_recipients, rows, strict=True)
    ]
    for row, entry in zip(rows, entries, strict=True):
        if entry is not None:
            row["status"] = MessageStatus.BLOCKED.value
    ids = _insert_messages(conn, rows)
    details = seal_details(
        conn, vault, [{} if entry is None else preblocked_detail(entry) for entry in entries]
    )
    _insert_events(
        conn,
        [
            {
                "message_id": m,
                "type": EventType.QUEUED.value if entry is None else EventType.BLOCKED.value,
                "created_at": now,
                "detail": detail,
            }
            for m, entry, detail in zip(ids, entries, details, strict=True)
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


# PostgreSQL: contents and events from arrays, one statement text whatever the batch size (see
# _unnest_insert). Rows are numbered (WITH ORDINALITY) and inserted in that order, so their ids follow
# the input's order as with the multi-row forms (SQLAlchemy's sort_by_parameter_order relies on the same).
_PG_CONTENTS = text(
    """
INSERT INTO contents (spec, created_at)
SELECT r.spec, CAST(:created_at AS DOUBLE PRECISION)
FROM unnest(CAST(:spec AS BYTEA[])) WITH ORDINALITY AS r(spec, n)
ORDER BY r.n
RETURNING id
"""
)
_PG_EVENTS = text(
    """
INSERT INTO events (message_id, type, created_at, detail)
SELECT r.message_id, r.type, r.created_at, CAST(r.detail AS JSON)
FROM unnest(
    CAST(:message_id AS BIGINT[]), CAST(:type AS VARCHAR[]), CAST(:created_at AS DOUBLE PRECISION[]),
    CAST(:detail AS TEXT[])
) WITH ORDINALITY AS r(message_id, type, created_at, detail, n)
ORDER BY r.n
"""
)


def _insert_contents(conn: Connection, specs: Sequence[bytes], *, now: float) -> list[int]:
    """Insert sealed contents; their new ids, in order."""
    if not specs:
        return []
    if conn.dialect.name != "postgresql":
        statement = insert(contents).returning(contents.c.id, sort_by_parameter_order=True)
        return list(conn.execute(statement, [{"spec": s, "created_at": now} for s in specs]).scalars())
    # Ids come from the sequence in insertion order: sorted, they are the input's order.
    return sorted(conn.execute(_PG_CONTENTS, {"spec": list(specs), "created_at": now}).scalars())


def _insert_events(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert event rows (``message_id``, ``type``, ``created_at``, ``detail``), in order."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(events), rows)
        return
    conn.execute(
        _PG_EVENTS,
        {
            "message_id": [r["message_id"] for r in rows],
            "type": [r["type"] for r in rows],
            "created_at": [r["created_at"] for r in rows],
            # As SQLAlchemy's JSON type writes it (json.dumps with its defaults).
            "detail": [json.dumps(r["detail"]) for r in rows],
        },
    )


def _insert_messages(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert message rows; their new ids, in order."""
    if not rows:
        return []
    if conn.dialect.name != "postgresql":
        return list(
            conn.execute(insert(messages).returning(messages.c.id, sort_by_parameter_order=True), rows)
            .scalars()
            .all()
        )
    columns = tuple(rows[0])
    statement = _unnest_insert(conn.dialect, messages, columns, ("id", "uuid"))
    # Matched by uuid (unique): the order of RETURNING is not promised for INSERT ... SELECT.
    result = conn.execute(statement, {c: [r[c] for r in rows] for c in columns})
    by_uuid = {row.uuid: row.id for row in result}
    return [by_uuid[row["uuid"]] for row in rows]


@functools.cache
def _unnest_insert(
    dialect: Dialect, table: Table, columns: tuple[str, ...], returning: tuple[str, ...]
) -> TextClause:
    """PostgreSQL: ``INSERT ... SELECT FROM unnest(arrays)``, one array parameter per column.

    Its text is the same whatever the number of rows, so psycopg converts it once and the server prepares
    it once. SQLAlchemy's multi-row VALUES has a parameter per row and column, more than psycopg caches
    (50): psycopg parsed the whole statement again for every batch (~7 % of ``serve``'s CPU time at 20
    messages a request).
    """
    arrays = ", ".join(f"CAST(:{c} AS {table.c[c].type.compile(dialect=dialect)}[])" for c in columns)
    return text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "  # noqa: S608
        f"RETURNING {', '.join(returning)}"
    )


@dataclass(frozen=True, slots=True)
class PendingMessage:
    envelope: Envelope
    status: str
    created_at: float


def load_envelopes(
    conn: Connection, message_ids: Sequence[int], *, vault: Vault
) -> dict[int, PendingMessage]:
    """The envelopes to deliver, with each message's current status, by MessageID (decrypted)."""
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
    rows = conn.execute(query).all()
    # Optional opens: a message whose recipient was erased while it waited is left out (not found).
    sealed_specs = {row.content_id: row.spec for row in rows}
    opened = vault.open_many_optional(conn, list(sealed_specs.values()), purpose=PURPOSE_SPEC)
    specs = {
        content_id: MessageSpec.from_json(json.loads(plain))
        for content_id, plain in zip(sealed_specs, opened, strict=True)
        if plain is not None
    }
    emails = vault.open_many_optional(conn, [row.recipient for row in rows], purpose=PURPOSE_RECIPIENT)
    names = vault.open_many_optional(
        conn, [row.recipient_name for row in rows], purpose=PURPOSE_RECIPIENT_NAME
    )
    result: dict[int, PendingMessage] = {}
    for row, email, name in zip(rows, emails, names, strict=True):
        spec = specs.get(row.content_id)
        if spec is None or email is None:
            continue
        envelope = Envelope(
            message_id=row.id,
            message_uuid=row.uuid,
            recipient=Address(email.decode(), "" if name is None else name.decode()),
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
    vault: Vault,
) -> None:
    """Record a delivery outcome (the reply sealed: replies quote addresses).

    A status that reports what came back after delivery (a bounce, a
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
        sealed = vault.seal(conn, last_reply[:2000].encode(), purpose=PURPOSE_LAST_REPLY, subject=None)
        values["last_reply"] = case((settled, messages.c.last_reply), else_=literal(sealed))
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


def record_sent(conn: Connection, sent: Sequence[SentRecord], *, now: float, vault: Vault) -> None:
    """Statuses and ``sent`` events of a whole batch in two statements (the delivery hot path).

    Same rule as :func:`update_message_status`: a status the feedback loop already set is kept.
    """
    if not sent:
        return
    # Replies quote addresses: sealed, like the events' details, under the day's shared key.
    shared = vault.data_keys_for(conn, [None])[None]
    replies = [vault.seal_with(shared, s.reply[:2000].encode(), purpose=PURPOSE_LAST_REPLY) for s in sent]
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
                "b_reply": reply,
                "b_header": s.message_id_header,
            }
            for s, reply in zip(sent, replies, strict=True)
        ],
    )
    # The attempt shows a re-send after a crash (the same Message-ID went out twice) in the history.
    details = seal_details(
        conn, vault, [{"smtp_reply": s.reply, "attempt": s.attempts} for s in sent], shared_key=shared
    )
    _insert_events(
        conn,
        [
            {"message_id": s.message_id, "type": EventType.SENT.value, "created_at": now, "detail": detail}
            for s, detail in zip(sent, details, strict=True)
        ],
    )


def record_event(
    conn: Connection,
    message_id: int,
    event_type: EventType,
    detail: dict[str, Any],
    *,
    now: float,
    vault: Vault,
) -> None:
    """Store one event; what its detail says about the person is sealed."""
    (stored,) = seal_details(conn, vault, [detail])
    conn.execute(
        insert(events).values(message_id=message_id, type=event_type.value, created_at=now, detail=stored)
    )


def get_message(conn: Connection, message_id: int, api_key_id: int, *, vault: Vault) -> MessageRecord | None:
    """A message, only if it belongs to the API key asking (decrypted; "" for erased parts)."""
    row = conn.execute(
        select(messages, contents.c.spec)
        .join(contents, contents.c.id == messages.c.content_id)
        .where(messages.c.id == message_id, messages.c.api_key_id == api_key_id)
    ).first()
    if row is None:
        return None
    opened = vault.open_optional(conn, row.spec, purpose=PURPOSE_SPEC)
    spec = {} if opened is None else json.loads(opened)
    return MessageRecord(
        id=row.id,
        uuid=row.uuid,
        recipient=open_text(conn, vault, row.recipient, purpose=PURPOSE_RECIPIENT),
        kind=row.kind,
        sender=row.sender,
        status=row.status,
        attempts=row.attempts,
        custom_id=row.custom_id,
        campaign=row.campaign,
        message_id_header=row.message_id_header,
        last_reply=None
        if row.last_reply is None
        else open_text(conn, vault, row.last_reply, purpose=PURPOSE_LAST_REPLY),
        created_at=row.created_at,
        updated_at=row.updated_at,
        subject=spec.get("Subject", ""),
        attachment_count=len(spec.get("Attachments", [])) + len(spec.get("InlinedAttachments", [])),
    )


def message_api_key(conn: Connection, message_id: int) -> int | None:
    """The API key a message was sent with."""
    return conn.execute(select(messages.c.api_key_id).where(messages.c.id == message_id)).scalar()


def list_events(
    conn: Connection, message_id: int, *, vault: Vault
) -> list[tuple[str, float, dict[str, Any]]]:
    """A message's events, oldest first, with their details opened."""
    rows = conn.execute(
        select(events.c.type, events.c.created_at, events.c.detail)
        .where(events.c.message_id == message_id)
        .order_by(events.c.id)
    ).all()
    details = open_details(conn, vault, [r.detail for r in rows])
    return [(r.type, r.created_at, detail) for r, detail in zip(rows, details, strict=True)]


# --- finding messages (the dashboard) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FoundMessage:
    """A message a search found; ``recipient`` and ``subject`` opened ("(erased)" / "" once erased)."""

    id: int
    uuid: str
    recipient: str
    sender: str
    subject: str
    campaign: str
    status: str
    created_at: float
    message_id_header: str | None


def find_messages(
    conn: Connection, api_key_id: int, query: str, *, limit: int, vault: Vault
) -> list[FoundMessage]:
    """An API key's messages by MessageID, MessageUUID, Message-ID header or exact recipient address,
    newest first.

    Recipients are sealed and found by their blind index: only a whole address matches (any case),
    never a part of one.
    """
    text = query.strip()
    if not text or len(text) > 998:
        return []
    conditions = []
    if text.isdigit() and len(text) < 19:
        conditions.append(messages.c.id == int(text))
    if text.startswith("<") or "@" not in text:
        header = text if text.startswith("<") else f"<{text}>"
        conditions.append(messages.c.message_id_header == header)
    conditions.append(messages.c.uuid == text.lower())
    if "@" in text:
        conditions.append(messages.c.recipient_index == vault.index(text))
    rows = conn.execute(
        select(
            messages.c.id,
            messages.c.uuid,
            messages.c.recipient,
            messages.c.sender,
            messages.c.campaign,
            messages.c.status,
            messages.c.created_at,
            messages.c.message_id_header,
            contents.c.spec,
        )
        .join(contents, contents.c.id == messages.c.content_id)
        .where(messages.c.api_key_id == api_key_id, or_(*conditions))
        .order_by(messages.c.id.desc())
        .limit(limit)
    )
    found = []
    for r in rows:
        spec = vault.open_optional(conn, r.spec, purpose=PURPOSE_SPEC)
        found.append(
            FoundMessage(
                id=r.id,
                uuid=r.uuid,
                recipient=open_text(conn, vault, r.recipient, purpose=PURPOSE_RECIPIENT, erased="(erased)"),
                sender=r.sender,
                subject="" if spec is None else json.loads(spec).get("Subject") or "",
                campaign=r.campaign,
                status=r.status,
                created_at=r.created_at,
                message_id_header=r.message_id_header,
            )
        )
    return found


# --- what comes back after delivery (mailstack.feedback) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageOutline:
    """What the feedback loop needs of a message: its recipient (opened), sender and status."""

    id: int
    recipient: str
    sender: str
    status: str


def message_outlines(
    conn: Connection, message_ids: Iterable[int], *, vault: Vault
) -> dict[int, MessageOutline]:
    """The messages that still exist among ``message_ids`` (an erased recipient's are left out)."""
    wanted = sorted(set(message_ids))
    found: dict[int, MessageOutline] = {}
    for start in range(0, len(wanted), 500):
        query = select(messages.c.id, messages.c.recipient, messages.c.sender, messages.c.status).where(
            messages.c.id.in_(wanted[start : start + 500])
        )
        for row in conn.execute(query):
            email = vault.open_optional(conn, row.recipient, purpose=PURPOSE_RECIPIENT)
            if email is not None:
                found[row.id] = MessageOutline(row.id, email.decode(), row.sender, row.status)
    return found


@dataclass(frozen=True, slots=True)
class UniqueEvent:
    """An event that may be reported twice (a log line read again, a DSN delivered again): ``uid``,
    derived from its source, keeps it to one row."""

    message_id: int
    type: EventType
    detail: dict[str, Any]
    uid: str


def record_unique_events(
    conn: Connection, items: Sequence[UniqueEvent], *, now: float, vault: Vault
) -> set[str]:
    """Insert the events whose uid is new ("on conflict do nothing"), details sealed; the new uids."""
    if not items:
        return set()
    details = seal_details(conn, vault, [item.detail for item in items])
    rows = [
        {
            "message_id": item.message_id,
            "type": item.type.value,
            "detail": detail,
            "uid": item.uid,
            "created_at": now,
        }
        for item, detail in zip(items, details, strict=True)
    ]
    statement = dialect_insert(conn, events).on_conflict_do_nothing(index_elements=["uid"])
    return set(conn.execute(statement.returning(events.c.uid), rows).scalars())


def update_statuses_unless(
    conn: Connection,
    changes: Sequence[tuple[int, MessageStatus, str]],
    *,
    unless: Iterable[str],
    now: float,
    vault: Vault,
) -> None:
    """Set each ``(message id, status, reply)`` in one statement, the reply sealed under the day's shared
    key (a batch mixes recipients), except for messages whose status is one of ``unless``."""
    if not changes:
        return
    sealed = vault.seal_many(
        conn, [(reply[:2000].encode(), None) for _id, _status, reply in changes], purpose=PURPOSE_LAST_REPLY
    )
    conn.execute(
        update(messages)
        # One != per status: an expanding NOT IN cannot be used with executemany.
        .where(messages.c.id == bindparam("b_id"), *(messages.c.status != str(s) for s in sorted(unless)))
        .values(status=bindparam("b_status"), last_reply=bindparam("b_reply"), updated_at=now),
        [
            {"b_id": message_id, "b_status": status.value, "b_reply": reply}
            for (message_id, status, _reply), reply in zip(changes, sealed, strict=True)
        ],
    )


def set_message_status(
    conn: Connection, message_id: int, status: MessageStatus, *, reply: str | None, now: float, vault: Vault
) -> None:
    """Set the status feedback reports (a bounce, a complaint, an unsubscribe) whatever it was, with the
    reply (sealed: replies quote addresses) when there is one."""
    values: dict[str, Any] = {"status": status.value, "updated_at": now}
    if reply:
        values["last_reply"] = vault.seal(
            conn, reply[:2000].encode(), purpose=PURPOSE_LAST_REPLY, subject=None
        )
    conn.execute(update(messages).where(messages.c.id == message_id).values(**values))


# --- the repository -------------------------------------------------------------------------------------


class Messages:
    """The messages aggregate (contents, recipients, events, outcomes) with the vault bound in: what
    :class:`~mailstack.storage.Store` hands out. Every method runs in the caller's transaction."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def insert(
        self, conn: Connection, api_key_id: int, batch: Sequence[MessageSpec], *, now: float
    ) -> list[list[AcceptedRecipient]]:
        """See :func:`insert_messages`."""
        return insert_messages(conn, api_key_id, batch, now=now, vault=self._vault)

    def load_envelopes(self, conn: Connection, message_ids: Sequence[int]) -> dict[int, PendingMessage]:
        """See :func:`load_envelopes`."""
        return load_envelopes(conn, message_ids, vault=self._vault)

    def update_status(
        self,
        conn: Connection,
        message_id: int,
        status: MessageStatus,
        *,
        now: float,
        attempts: int | None = None,
        last_reply: str | None = None,
        message_id_header: str | None = None,
    ) -> None:
        """See :func:`update_message_status`."""
        update_message_status(
            conn,
            message_id,
            status,
            now=now,
            attempts=attempts,
            last_reply=last_reply,
            message_id_header=message_id_header,
            vault=self._vault,
        )

    def record_sent(self, conn: Connection, sent: Sequence[SentRecord], *, now: float) -> None:
        """See :func:`record_sent`."""
        record_sent(conn, sent, now=now, vault=self._vault)

    def record_event(
        self, conn: Connection, message_id: int, event_type: EventType, detail: dict[str, Any], *, now: float
    ) -> None:
        """See :func:`record_event`."""
        record_event(conn, message_id, event_type, detail, now=now, vault=self._vault)

    def get(self, conn: Connection, message_id: int, api_key_id: int) -> MessageRecord | None:
        """See :func:`get_message`."""
        return get_message(conn, message_id, api_key_id, vault=self._vault)

    def api_key_of(self, conn: Connection, message_id: int) -> int | None:
        """See :func:`message_api_key`."""
        return message_api_key(conn, message_id)

    def events(self, conn: Connection, message_id: int) -> list[tuple[str, float, dict[str, Any]]]:
        """See :func:`list_events`."""
        return list_events(conn, message_id, vault=self._vault)

    def find(self, conn: Connection, api_key_id: int, query: str, *, limit: int) -> list[FoundMessage]:
        """See :func:`find_messages`."""
        return find_messages(conn, api_key_id, query, limit=limit, vault=self._vault)

    def outlines(self, conn: Connection, message_ids: Iterable[int]) -> dict[int, MessageOutline]:
        """See :func:`message_outlines`."""
        return message_outlines(conn, message_ids, vault=self._vault)

    def record_unique_events(self, conn: Connection, items: Sequence[UniqueEvent], *, now: float) -> set[str]:
        """See :func:`record_unique_events`."""
        return record_unique_events(conn, items, now=now, vault=self._vault)

    def update_statuses_unless(
        self,
        conn: Connection,
        changes: Sequence[tuple[int, MessageStatus, str]],
        *,
        unless: Iterable[str],
        now: float,
    ) -> None:
        """See :func:`update_statuses_unless`."""
        update_statuses_unless(conn, changes, unless=unless, now=now, vault=self._vault)

    def set_status(
        self, conn: Connection, message_id: int, status: MessageStatus, *, reply: str | None, now: float
    ) -> None:
        """See :func:`set_message_status`."""
        set_message_status(conn, message_id, status, reply=reply, now=now, vault=self._vault)
