"""Data-subject rights: export everything held about an address, or erase it (GDPR articles 15 and 17).

Both find the subject by its blind index, open what is sealed with the vault, and leave an audit entry
(who, when, counts; never the address). Erasure deletes what can be deleted, crypto-shreds the rest by
deleting the subject's data key, takes the address out of what it shares with other people (contents,
their sandbox copies, idempotent responses, webhook payloads), and keeps one hashed suppression so the
address is never mailed again. :func:`vacuum_erased` then reclaims the old row versions the database
still holds on disk (see ``mailstack/privacy/_vacuum.py``).

Shared data is found through the subject's own messages (blind index): an idempotent response was stored
in the same transaction as the messages it lists (same API key, same time), and a webhook payload can only
be about a message of that API key, made after the subject's first one. So only those rows are opened;
nothing else of the short-lived tables is scanned. What mentions the address otherwise (in an idempotent
response or webhook payload of a message that retention already anonymised) is outside that reach — with
the shipped policy both tables are purged long before the messages are anonymised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, delete, func, or_, select, update

from mailstack.keyring import Keyring
from mailstack.storage import (
    GLOBAL_SCOPE,
    PURPOSE_AUTOMATION_ERROR,
    PURPOSE_IDEMPOTENT_RESPONSE,
    PURPOSE_OUTBOX_DATA,
    PURPOSE_SPEC,
    PURPOSE_WEBHOOK_PAYLOAD,
    Erasure,
    Form,
    Personal,
    Vault,
    address_index,
    forget_link_subject,
    list_events,
    list_suppressions,
    mark_of,
    normalize_address,
    open_link_urls,
    personal_columns,
    schema,
    seal_json,
    sealed_purpose,
    suppress,
)
from mailstack.storage.schema import (
    automation_runs,
    consents,
    contents,
    events,
    idempotency_keys,
    link_counters,
    messages,
    outbox,
    queue_jobs,
    relay_queue_ids,
    soft_bounces,
    suppressions,
    webhook_deliveries,
    webhook_endpoints,
)

from ._audit import list_audit, record_audit
from ._consent import all_consents
from ._redact import AddressPattern, mentions, redact_json, redact_message, redact_spec
from ._vacuum import vacuum

__all__ = [
    "ERASURE_STEPS",
    "ERASURE_TABLES",
    "EXPORT_SECTIONS",
    "ErasureReport",
    "check_subject_coverage",
    "erase_subject",
    "export_subject",
    "vacuum_erased",
]

_CHUNK = 500
# A webhook delivery is made after the event it reports, on whichever node fans it out: its time is
# compared with the subject's first message with this much slack for clocks that disagree.
_CLOCK_SLACK_SECONDS = 3600.0
# How an erasure reaches each table it deletes from or rewrites (their old row versions are vacuumed
# afterwards). Every table with a column marked personal that erasure does not keep on purpose must be
# here (check_subject_coverage): a new table holding an address cannot be silently missed.
ERASURE_STEPS: Mapping[str, str] = {
    "messages": "the subject's messages deleted (in-flight ones left to finish, unreadable once the key "
    "goes); the address taken out of other people's CustomIDs",
    "events": "of the subject's messages: deleted",
    "outbox": "of the subject's messages: deleted; other recipients' copies of a shared content: redacted",
    "queue_jobs": "of the subject's messages: deleted (undelivered mail is cancelled)",
    "automation_runs": "triggered by the subject's messages: deleted",
    "relay_queue_ids": "of the subject's messages: deleted",
    "message_flags": "with the subject's messages (ON DELETE CASCADE)",
    "message_links": "with the subject's messages (ON DELETE CASCADE)",
    "contents": "used by no one else: deleted; shared with others: the address taken out",
    "suppressions": "replaced by one hashed entry without the address, so it is never mailed again",
    "soft_bounces": "deleted",
    "consents": "deleted",
    "link_counters": "counters of links quoting the address: deleted",
    "idempotency_keys": "the subject's entries taken out of stored Send API responses",
    "webhook_deliveries": "the subject's events dropped from payloads; deliveries left empty deleted",
    # The shredded key's old row version would open everything sealed under it.
    "data_keys": "the subject's data key deleted (crypto-shredding)",
}
ERASURE_TABLES = tuple(ERASURE_STEPS)
# Where the export puts each table holding personal data (None: nothing to export, with the reason).
# Same rule as for erasure: check_subject_coverage fails on a personal table missing here.
EXPORT_SECTIONS: Mapping[str, str | None] = {
    "messages": "messages",
    "contents": "messages",  # each message's "content"
    "events": "messages",  # each message's "events"
    "outbox": "messages",  # each message's "outbox"
    "queue_jobs": None,  # delivery state; what happened is in the message's events
    "automation_runs": "automation_runs",
    "suppressions": "suppressions",
    "soft_bounces": "soft_bounces",
    "consents": "consents",
    "link_counters": "links",
    "idempotency_keys": "idempotent_responses",
    "webhook_deliveries": "webhook_events",
    "audit_log": "audit",
    "data_keys": None,  # keys, not data: what they seal is exported opened
}


def check_subject_coverage(metadata: MetaData | None = None) -> list[str]:
    """What the marks say export and erasure must reach but they do not: one line per table (empty when
    both cover every table holding personal data about a data subject). ``metadata`` is the schema's
    (the tests pass a copy with a table added)."""
    problems = []
    tables: dict[str, list[str]] = {}
    for table, column, mark in personal_columns(schema.metadata if metadata is None else metadata):
        if mark.erasure is not Erasure.KEEP:
            tables.setdefault(table.name, []).append(column.name)
    for name, columns in tables.items():
        listed = ", ".join(columns)
        if name not in ERASURE_STEPS:
            problems.append(f"{name} ({listed}): personal, but erasure does not reach it (ERASURE_STEPS)")
        if name not in EXPORT_SECTIONS:
            problems.append(f"{name} ({listed}): personal, but the export does not list it (EXPORT_SECTIONS)")
    return problems


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What :func:`erase_subject` removed; counts only, so it can go into the audit trail."""

    messages_deleted: int
    messages_in_flight: int  # being delivered right now: left to finish, unreadable once the key is gone
    events_deleted: int
    outbox_deleted: int
    contents_deleted: int
    contents_redacted: int  # shared with other recipients: the address was taken out of them
    sandbox_copies_redacted: int  # the other recipients' sandbox copies of those contents
    idempotent_responses_redacted: int  # stored Send API responses: the subject's entries taken out
    webhook_deliveries_deleted: int  # pending or logged deliveries that were only about the subject
    webhook_deliveries_redacted: int  # grouped deliveries: the subject's events taken out, others kept
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


def _marked(conn: Connection, vault: Vault, table: Table, row: Any) -> dict[str, Any]:
    """Every personal column of ``row`` the marks say is about the person, opened when sealed: an export
    entry starts from these, so a personal column added to the table is exported without more code.
    Blind indexes are left out (the export names its subject once, at the top)."""
    values: dict[str, Any] = {}
    fields = row._mapping
    for column in table.columns:
        mark = mark_of(column)
        if not isinstance(mark, Personal) or mark.form is Form.INDEX or column.name not in fields:
            continue
        value = fields[column.name]
        values[column.name] = (
            _text(vault, conn, value, sealed_purpose(column)) if mark.form is Form.SEALED else value
        )
    return values


def _own_content(spec: dict[str, Any], address: str) -> dict[str, Any]:
    """A content as its recipient saw it: other people's blind copies (Bcc) are not theirs to see."""
    bcc = spec.get("Bcc")
    if isinstance(bcc, list):
        spec["Bcc"] = [
            e for e in bcc if isinstance(e, dict) and normalize_address(str(e.get("Email", ""))) == address
        ]
    return spec


def export_subject(
    conn: Connection, vault: Vault, keyring: Keyring, address: str, *, actor: str = "system:export"
) -> dict[str, Any]:
    """Everything held about ``address``, opened, as JSON-serialisable data; the export is audited.

    Shared data is exported for the subject's part only: a content without the other recipients' blind
    copies, the subject's entries of idempotent Send API responses, the subject's events of webhook
    payloads still stored (pending or logged).
    """
    subject = address_index(keyring, address)
    normalized = normalize_address(address)
    pattern = AddressPattern(normalized)
    rows = conn.execute(
        select(messages, contents.c.spec)
        .join(contents, contents.c.id == messages.c.content_id)
        .where(messages.c.recipient_index == subject)
        .order_by(messages.c.id)
    ).all()
    ids = frozenset(row.id for row in rows)
    exported_messages = []
    for row in rows:
        spec = vault.open_optional(conn, row.spec, purpose=PURPOSE_SPEC)
        kept = conn.execute(select(outbox).where(outbox.c.message_id == row.id)).all()
        # The personal columns (recipient, last reply, ...) come opened from the marks, once each.
        marked = _marked(conn, vault, messages, row)
        exported_messages.append(
            {
                **marked,
                "id": row.id,
                "uuid": row.uuid,
                "recipient_name": marked["recipient_name"] or "",
                "kind": row.kind,
                "sender": row.sender,
                "custom_id": row.custom_id,
                "campaign": row.campaign,
                "status": row.status,
                "attempts": row.attempts,
                "message_id_header": row.message_id_header,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "content": None if spec is None else _own_content(json.loads(spec), normalized),
                "events": [
                    {"type": kind, "at": at, "detail": detail}
                    for kind, at, detail in list_events(conn, row.id, vault=vault)
                ],
                "outbox": [
                    {
                        **_marked(conn, vault, outbox, item),
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
    responses = [
        {"at": row.created_at, "status_code": row.status_code, "entries": found}
        for row, body in _idempotent_responses(conn, vault, rows)
        if (found := mentions(body, pattern, ids))
    ]
    webhook_events = [
        {
            "delivery_id": row.id,
            "endpoint_id": row.endpoint_id,
            "state": row.state,
            "at": row.created_at,
            "events": found,
        }
        for row, payload in _webhook_deliveries(conn, vault, rows)
        if (found := mentions(payload, pattern, ids))
    ]
    runs = conn.execute(
        select(automation_runs)
        .where(automation_runs.c.trigger_message_id.in_(sorted(ids)))
        .order_by(automation_runs.c.created_at)
    ).all()
    run_errors = vault.open_many_optional(conn, [r.error for r in runs], purpose=PURPOSE_AUTOMATION_ERROR)
    links = conn.execute(
        select(link_counters)
        .where(link_counters.c.subject == subject)
        .order_by(link_counters.c.campaign, link_counters.c.position)
    ).all()
    link_urls = open_link_urls(conn, vault, [link.url for link in links])
    result: dict[str, Any] = {
        "address": normalized,
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
        "consents": [record.as_dict() for record in all_consents(conn, vault, address)],
        "idempotent_responses": responses,
        "webhook_events": webhook_events,
        "automation_runs": [
            {
                "rule_id": run.rule_id,
                "trigger_message_id": run.trigger_message_id,
                "sent_message_id": run.sent_message_id,
                "at": run.created_at,
                "error": None if error is None else error.decode("utf-8", "replace"),
            }
            for run, error in zip(runs, run_errors, strict=True)
        ],
        # Click counters of links that quote the address (personalised links); campaign "" holds the
        # API key's totals, as the link-click API reads them.
        "links": [
            {
                "campaign": link.campaign,
                "position": link.position,
                "url": url,
                "clicked_messages": link.clicked_messages,
                "click_events": link.click_events,
            }
            for link, url in zip(links, link_urls, strict=True)
        ],
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
    suppressions, soft bounces and consents; take it out of contents shared with others (the submitted
    message of SMTP mail included, and the other recipients' sandbox copies), of idempotent responses
    (a retried request is answered without it, and sends nothing again) and of webhook payloads (its
    events are dropped, pending ones are never sent); delete its data key (whatever is left, e.g. in
    backups, becomes unreadable once no copy of the key is left either); keep one hashed ``erasure``
    suppression so that it is never mailed again. Runs in the caller's transaction; call
    :func:`vacuum_erased` after the commit.
    """
    subject = address_index(keyring, address)
    pattern = AddressPattern(address)
    now = time.time()
    rows = conn.execute(
        select(messages.c.id, messages.c.content_id, messages.c.api_key_id, messages.c.created_at).where(
            messages.c.recipient_index == subject
        )
    ).all()
    leased = set(
        conn.execute(
            select(queue_jobs.c.message_id).where(
                queue_jobs.c.message_id.in_([r.id for r in rows]), queue_jobs.c.state == "leased"
            )
        ).scalars()
    )
    all_ids = frozenset(r.id for r in rows)
    responses_redacted = _redact_responses(conn, vault, rows, pattern, all_ids)
    webhooks_deleted, webhooks_redacted = _redact_webhooks(conn, vault, rows, pattern, all_ids)
    # A message a worker holds right now is left to finish (deleting it under the worker would fail its
    # batch); once the key is gone, nothing of it can be read.
    ids = [r.id for r in rows if r.id not in leased]
    events_deleted = outbox_deleted = 0
    for chunk in _chunks(ids):
        conn.execute(delete(queue_jobs).where(queue_jobs.c.message_id.in_(chunk)))
        events_deleted += conn.execute(delete(events).where(events.c.message_id.in_(chunk))).rowcount
        outbox_deleted += conn.execute(delete(outbox).where(outbox.c.message_id.in_(chunk))).rowcount
        conn.execute(delete(automation_runs).where(automation_runs.c.trigger_message_id.in_(chunk)))
        conn.execute(delete(relay_queue_ids).where(relay_queue_ids.c.message_id.in_(chunk)))
        # message_flags and message_links go with their message (ON DELETE CASCADE).
        conn.execute(delete(messages).where(messages.c.id.in_(chunk)))
    _scrub_custom_ids(conn, sorted(leased), pattern)  # the rest of an in-flight row is sealed
    content_ids = sorted({r.content_id for r in rows})
    contents_deleted, contents_redacted, copies_redacted = _contents(
        conn, vault, content_ids, subject, pattern
    )
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
    forget_link_subject(conn, subject)  # click counters of links quoting the address
    shredded = vault.shred_subject(conn, subject)
    report = ErasureReport(
        messages_deleted=len(ids),
        messages_in_flight=len(leased),
        events_deleted=events_deleted,
        outbox_deleted=outbox_deleted,
        contents_deleted=contents_deleted,
        contents_redacted=contents_redacted,
        sandbox_copies_redacted=copies_redacted,
        idempotent_responses_redacted=responses_redacted,
        webhook_deliveries_deleted=webhooks_deleted,
        webhook_deliveries_redacted=webhooks_redacted,
        suppressions_replaced=replaced,
        soft_bounces_deleted=bounces,
        consents_deleted=consents_deleted,
        key_shredded=shredded,
    )
    record_audit(conn, actor=actor, action="erase", subject=subject, detail=report.as_dict(), now=now)
    return report


def vacuum_erased(engine: Engine) -> bool:
    """After an erasure has committed: reclaim the old row versions of :data:`ERASURE_TABLES` (the
    deleted rows, and the versions of rewritten ones that still named the subject). Outside any
    transaction; never raises; False when it could not run (see ``mailstack/privacy/_vacuum.py``)."""
    return vacuum(engine, ERASURE_TABLES)


def _chunks(ids: Sequence[Any]) -> list[list[Any]]:
    return [list(ids[i : i + _CHUNK]) for i in range(0, len(ids), _CHUNK)]


def _contents(
    conn: Connection, vault: Vault, content_ids: Sequence[int], subject: str, pattern: AddressPattern
) -> tuple[int, int, int]:
    """Delete contents no message uses any more; take the address out of those other people's messages
    use (and out of their sandbox copies and CustomIDs). A content only the subject's in-flight messages
    still use is left to them: it is sealed under the subject's key, or goes with retention."""
    deleted = redacted = copies = 0
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
        others = conn.execute(
            select(messages.c.id, messages.c.content_id, messages.c.recipient_index, messages.c.custom_id)
            .where(
                messages.c.content_id.in_(sorted(used)),
                or_(messages.c.recipient_index.is_(None), messages.c.recipient_index != subject),
            )
            .order_by(messages.c.id)
        ).all()
        for content_id in sorted({row.content_id for row in others}):
            sealed = conn.execute(select(contents.c.spec).where(contents.c.id == content_id)).scalar_one()
            plain = vault.open_optional(conn, sealed, purpose=PURPOSE_SPEC)
            if plain is None:
                continue
            spec = json.loads(plain)
            clean = redact_spec(spec, pattern)
            if clean == spec:
                continue
            # Shared with other recipients: sealed again under the day's shared key.
            text = json.dumps(clean, separators=(",", ":"), ensure_ascii=False).encode()
            resealed = vault.seal(conn, text, purpose=PURPOSE_SPEC, subject=None)
            conn.execute(update(contents).where(contents.c.id == content_id).values(spec=resealed))
            redacted += 1
        _scrub_custom_ids(conn, [row.id for row in others], pattern)
        copies += _redact_copies(conn, vault, others, pattern)
    return deleted, redacted, copies


def _scrub_custom_ids(conn: Connection, message_ids: Sequence[int], pattern: AddressPattern) -> None:
    """CustomID is the client's own, kept in clear as given: the address goes if the client put it there."""
    for chunk in _chunks(message_ids):
        found = conn.execute(
            select(messages.c.id, messages.c.custom_id).where(
                messages.c.id.in_(chunk), messages.c.custom_id != ""
            )
        ).all()
        for row in found:
            if pattern.search(row.custom_id):
                conn.execute(
                    update(messages)
                    .where(messages.c.id == row.id)
                    .values(custom_id=pattern.sub(row.custom_id))
                )


def _redact_copies(conn: Connection, vault: Vault, others: Sequence[Any], pattern: AddressPattern) -> int:
    """The other recipients' sandbox copies (the message as it left, To and Cc included), redacted and
    sealed again under their own recipient's key."""
    owners = {row.id: row.recipient_index for row in others}
    done = 0
    for chunk in _chunks(sorted(owners)):
        kept = conn.execute(
            select(outbox.c.id, outbox.c.message_id, outbox.c.data).where(outbox.c.message_id.in_(chunk))
        ).all()
        opened = vault.open_many_optional(conn, [item.data for item in kept], purpose=PURPOSE_OUTBOX_DATA)
        for item, data in zip(kept, opened, strict=True):
            if data is None:
                continue
            clean = redact_message(data, pattern)
            if clean != data:
                resealed = vault.seal(
                    conn, clean, purpose=PURPOSE_OUTBOX_DATA, subject=owners[item.message_id]
                )
                conn.execute(update(outbox).where(outbox.c.id == item.id).values(data=resealed))
                done += 1
    return done


def _idempotent_responses(conn: Connection, vault: Vault, rows: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """The stored Send API responses that may list the subject, opened: those of the API keys and times
    of the subject's messages (a response is stored in the same transaction as its messages, with the
    same time)."""
    times: dict[int, set[float]] = {}
    for row in rows:
        times.setdefault(row.api_key_id, set()).add(row.created_at)
    for api_key_id, moments in sorted(times.items()):
        for chunk in _chunks(sorted(moments)):
            found = conn.execute(
                select(
                    idempotency_keys.c.api_key_id,
                    idempotency_keys.c.key,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.created_at,
                    idempotency_keys.c.response,
                ).where(idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.created_at.in_(chunk))
            ).all()
            opened = vault.open_many_optional(
                conn, [row.response for row in found], purpose=PURPOSE_IDEMPOTENT_RESPONSE
            )
            for row, plain in zip(found, opened, strict=True):
                if plain is not None:
                    yield row, json.loads(plain)


def _redact_responses(
    conn: Connection, vault: Vault, rows: Sequence[Any], pattern: AddressPattern, ids: frozenset[int]
) -> int:
    """Take the subject's entries out of stored Send API responses, keeping the records: a retried
    request is answered from them without the address, and nothing is sent again (deleting them would
    store the address anew, blocked, and mail the other recipients twice)."""
    done = 0
    for row, body in _idempotent_responses(conn, vault, rows):
        clean = redact_json(body, pattern, ids)
        if clean != body:
            conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.api_key_id == row.api_key_id, idempotency_keys.c.key == row.key)
                .values(
                    response=seal_json(conn, vault, clean, purpose=PURPOSE_IDEMPOTENT_RESPONSE, subject=None)
                )
            )
            done += 1
    return done


def _webhook_deliveries(conn: Connection, vault: Vault, rows: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """The webhook deliveries that may report on the subject, opened: those to endpoints of the API keys
    that sent the subject's messages, made since the first of them."""
    if not rows:
        return
    endpoint_ids = sorted(
        conn.execute(
            select(webhook_endpoints.c.id).where(
                webhook_endpoints.c.api_key_id.in_(sorted({row.api_key_id for row in rows}))
            )
        ).scalars()
    )
    if not endpoint_ids:
        return
    since = min(row.created_at for row in rows) - _CLOCK_SLACK_SECONDS
    last = 0
    while True:
        batch = conn.execute(
            select(
                webhook_deliveries.c.id,
                webhook_deliveries.c.endpoint_id,
                webhook_deliveries.c.state,
                webhook_deliveries.c.created_at,
                webhook_deliveries.c.payload,
            )
            .where(
                webhook_deliveries.c.endpoint_id.in_(endpoint_ids),
                webhook_deliveries.c.created_at >= since,
                webhook_deliveries.c.id > last,
            )
            .order_by(webhook_deliveries.c.id)
            .limit(_CHUNK)
        ).all()
        if not batch:
            return
        payloads = [row.payload for row in batch]
        opened = vault.open_many_optional(conn, payloads, purpose=PURPOSE_WEBHOOK_PAYLOAD)
        for row, plain in zip(batch, opened, strict=True):
            if plain is not None:
                yield row, json.loads(plain)
        last = batch[-1].id


def _redact_webhooks(
    conn: Connection, vault: Vault, rows: Sequence[Any], pattern: AddressPattern, ids: frozenset[int]
) -> tuple[int, int]:
    """Drop the subject's events from stored webhook payloads, pending or logged: a delivery left with
    none is deleted (a pending one is never sent), a grouped one keeps the other events, sealed again.
    Dropped rather than blanked: an event with the address blanked would still report on the person
    (MessageID, CustomID, times) to a system outside mailstack after their erasure."""
    deleted = redacted = 0
    for row, payload in _webhook_deliveries(conn, vault, rows):
        if isinstance(payload, list):
            clean: Any = redact_json(payload, pattern, ids)
            remaining = len(clean)
        elif redact_json([payload], pattern, ids):
            clean = redact_json(payload, pattern, ids)
            remaining = 1
        else:
            clean, remaining = None, 0
        if not remaining:
            conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.id == row.id))
            deleted += 1
        elif clean != payload:
            conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == row.id)
                .values(
                    payload=seal_json(conn, vault, clean, purpose=PURPOSE_WEBHOOK_PAYLOAD, subject=None),
                    event_count=remaining,
                )
            )
            redacted += 1
    return deleted, redacted
