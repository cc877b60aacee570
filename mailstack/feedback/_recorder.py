"""Turning what comes back into events, message statuses and suppressions, exactly once.

Both ways feedback arrives (Postfix's log, mail to the bounce domain) end here, inside the caller's
transaction. Every event carries a ``uid`` derived from its source (the log line, the received
message), and is inserted with "on conflict do nothing": feedback read twice — a log re-read after a
lost cursor, a bounce Postfix delivers again after a lost ``250`` — is stored once, and its side effects
(status, soft-bounce count, suppression) happen only when the event is new. A message bounces at most
once (a soft bounce may still become hard): the DSN Postfix sends for a bounce it already logged adds
nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mailstack.config import FeedbackSettings
from mailstack.model import SETTLED_STATUSES, EventType, MessageStatus
from mailstack.observability import get_logger
from mailstack.privacy import Vault
from mailstack.storage import (
    GLOBAL_SCOPE,
    PURPOSE_LAST_REPLY,
    PURPOSE_RECIPIENT,
    note_soft_bounce,
    seal_details,
    suppress,
)
from mailstack.storage.schema import events, messages

from ._mailjet import bounce_fields, related_to_recipient, sent_fields, spam_fields, unsub_fields

__all__ = ["Bounce", "FeedbackRecorder", "MessageFacts", "StatusReport", "event_uid"]

log = get_logger("mailstack.feedback")

_DAY = 86400.0


def event_uid(kind: str, *parts: str | bytes | int) -> str:
    """A stable idempotency key for an event: ``kind`` plus a digest of what identifies its source."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8", "surrogateescape")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return f"{kind}:{digest.hexdigest()[:48]}"


@dataclass(slots=True)
class MessageFacts:
    """What the recorder needs of a message; ``status`` follows the changes it makes."""

    id: int
    recipient: str
    sender: str
    status: str

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One recipient's delivery attempt: accepted by the destination (``delivered``) or deferred."""

    message: MessageFacts
    delivered: bool
    reply: str  # the remote server's reply, or Postfix's own words when there was none
    uid: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Bounce:
    """One recipient's bounce, however it was learnt."""

    hard: bool
    reason: str  # Sisimai's vocabulary
    source: str  # "postfix-log" or "intake"
    status: str = ""  # enhanced status code, e.g. 5.1.1
    reply_code: str = ""
    diagnostic: str = ""  # the remote server's words
    extra: Mapping[str, Any] = field(default_factory=dict)


class FeedbackRecorder:
    """Records feedback for messages and applies the suppression policy of ``[feedback]``."""

    def __init__(self, settings: FeedbackSettings, vault: Vault) -> None:
        """``vault`` opens the sealed recipients and seals the replies, which quote addresses."""
        self._settings = settings
        self._vault = vault

    def load(self, conn: Connection, message_ids: Iterable[int]) -> dict[int, MessageFacts]:
        """The messages that still exist among ``message_ids`` (an erased recipient's are left out)."""
        wanted = sorted(set(message_ids))
        found: dict[int, MessageFacts] = {}
        for start in range(0, len(wanted), 500):
            query = select(messages.c.id, messages.c.recipient, messages.c.sender, messages.c.status).where(
                messages.c.id.in_(wanted[start : start + 500])
            )
            for row in conn.execute(query):
                email = self._vault.open_optional(conn, row.recipient, purpose=PURPOSE_RECIPIENT)
                if email is not None:
                    found[row.id] = MessageFacts(row.id, email.decode(), row.sender, row.status)
        return found

    # --- delivery status ------------------------------------------------------------------------------

    def statuses(self, conn: Connection, reports: Sequence[StatusReport], *, now: float) -> int:
        """Record delivered and deferred reports, the bulk of Postfix's log, in two statements.

        A report already recorded (same uid) changes nothing; a message whose status says what came back
        later (a bounce, a complaint) or that it was blocked keeps it. Returns how many were new.
        """
        if not reports:
            return 0
        kinds: list[EventType] = []
        details: list[dict[str, Any]] = []
        for report in reports:
            if report.delivered:
                kinds.append(EventType.DELIVERED)
                details.append(
                    {"mailjet": sent_fields(report.reply), "smtp_reply": report.reply, **report.extra}
                )
            else:
                kinds.append(EventType.DEFERRED)
                details.append({"smtp_reply": report.reply, **report.extra})
        # Replies quote addresses: sealed, the facts statistics count kept readable.
        rows = [
            {
                "message_id": report.message.id,
                "type": kind.value,
                "detail": stored,
                "uid": report.uid,
                "created_at": now,
            }
            for report, kind, stored in zip(
                reports, kinds, seal_details(conn, self._vault, details), strict=True
            )
        ]
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(events).on_conflict_do_nothing(index_elements=["uid"]).returning(events.c.uid)
        inserted = set(conn.execute(stmt, rows).scalars())
        changed = []
        for report in reports:
            if report.uid in inserted and report.message.status not in SETTLED_STATUSES:
                status = MessageStatus.SENT if report.delivered else MessageStatus.DEFERRED
                report.message.status = status.value
                changed.append((report, status))
        # Replies quote addresses: sealed, under the day's shared key (a batch mixes recipients).
        sealed = self._vault.seal_many(
            conn, [(r.reply[:2000].encode(), None) for r, _s in changed], purpose=PURPOSE_LAST_REPLY
        )
        updates = [
            {"b_id": r.message.id, "b_status": status.value, "b_reply": reply}
            for (r, status), reply in zip(changed, sealed, strict=True)
        ]
        if updates:
            conn.execute(
                update(messages)
                # One != per status: an expanding NOT IN cannot be used with executemany.
                .where(
                    messages.c.id == bindparam("b_id"),
                    *(messages.c.status != s.value for s in sorted(SETTLED_STATUSES)),
                )
                .values(status=bindparam("b_status"), last_reply=bindparam("b_reply"), updated_at=now),
                updates,
            )
        return len(inserted)

    def delivered(
        self,
        conn: Connection,
        message: MessageFacts,
        *,
        reply: str,
        uid: str,
        now: float,
        extra: Mapping[str, Any],
    ) -> bool:
        """The destination accepted the message (Mailjet's ``sent``)."""
        return bool(self.statuses(conn, [StatusReport(message, True, reply, uid, extra)], now=now))

    def deferred(
        self,
        conn: Connection,
        message: MessageFacts,
        *,
        reply: str,
        uid: str,
        now: float,
        extra: Mapping[str, Any],
    ) -> bool:
        """The destination (or the way to it) failed temporarily; the sender retries on its own schedule."""
        return bool(self.statuses(conn, [StatusReport(message, False, reply, uid, extra)], now=now))

    # --- bounces, complaints, unsubscribes -------------------------------------------------------------

    def bounce(
        self, conn: Connection, message: MessageFacts, bounce: Bounce, *, uid: str, now: float
    ) -> bool:
        """Record a bounce and suppress as the policy says; False when it was already known."""
        if message.status == MessageStatus.HARD_BOUNCED or (
            message.status == MessageStatus.SOFT_BOUNCED and not bounce.hard
        ):
            return False  # this message's bounce is already counted (e.g. Postfix's DSN after its log line)
        reply = bounce.diagnostic or bounce.status or bounce.reason
        blocked = bounce.hard or self._soft_limit_reached(conn, message, bounce, now)
        detail = {
            "mailjet": bounce_fields(reason=bounce.reason, hard=bounce.hard, blocked=blocked, comment=reply),
            "smtp_reply": reply,
            "category": "hard" if bounce.hard else "soft",
            "reason": bounce.reason,
            "status": bounce.status,
            "reply_code": bounce.reply_code,
            "source": bounce.source,
            **bounce.extra,
        }
        if not _event(conn, self._vault, message.id, EventType.BOUNCE, detail, uid, now):
            return False
        status = MessageStatus.HARD_BOUNCED if bounce.hard else MessageStatus.SOFT_BOUNCED
        _set_status(conn, self._vault, message, status, reply, now)
        if bounce.hard:
            suppress(
                conn,
                message.recipient,
                scope=GLOBAL_SCOPE,
                reason=_reason_text(bounce.reason, bounce.status, bounce.diagnostic),
                source="hard_bounce",
                now=now,
                message_id=message.id,
                vault=self._vault,
            )
        elif blocked:
            days = self._settings.soft_bounce_suppression_days
            suppress(
                conn,
                message.recipient,
                scope=GLOBAL_SCOPE,
                reason=f"{self._settings.soft_bounce_limit} soft bounces within "
                f"{self._settings.soft_bounce_days:g} days (last: {bounce.reason})",
                source="soft_bounce_limit",
                now=now,
                expires_at=now + days * _DAY if days else None,
                message_id=message.id,
                vault=self._vault,
            )
        log.info(
            "bounce recorded",
            message_id=message.id,
            category=detail["category"],
            reason=bounce.reason,
            suppressed=blocked,
            source=bounce.source,
        )
        return True

    def _soft_limit_reached(
        self, conn: Connection, message: MessageFacts, bounce: Bounce, now: float
    ) -> bool:
        # Only failures about the address count: a blocklisted IP or rejected content says nothing of it.
        if not related_to_recipient(bounce.reason):
            return False
        window = self._settings.soft_bounce_days * _DAY
        count = note_soft_bounce(
            conn, message.recipient, message.id, now=now, window=window, vault=self._vault
        )
        return count >= self._settings.soft_bounce_limit

    def complaint(
        self,
        conn: Connection,
        message: MessageFacts,
        *,
        source: str,
        uid: str,
        now: float,
        extra: Mapping[str, Any],
    ) -> bool:
        """A spam complaint (ARF): suppressed everywhere at once, since the sending IPs are shared."""
        if message.status == MessageStatus.SPAM:
            return False
        detail = {"mailjet": spam_fields(source), **extra}
        if not _event(conn, self._vault, message.id, EventType.SPAM, detail, uid, now):
            return False
        _set_status(conn, self._vault, message, MessageStatus.SPAM, None, now)
        suppress(
            conn,
            message.recipient,
            scope=GLOBAL_SCOPE,
            reason=f"spam complaint ({source})",
            source="complaint",
            now=now,
            message_id=message.id,
            vault=self._vault,
        )
        log.info("complaint recorded", message_id=message.id, source=source)
        return True

    def unsubscribe(
        self, conn: Connection, message: MessageFacts, *, method: str, uid: str, now: float
    ) -> bool:
        """The recipient unsubscribed: no more mail to them from this message's sender domain."""
        detail = {"mailjet": unsub_fields(), "method": method}
        if not _event(conn, self._vault, message.id, EventType.UNSUB, detail, uid, now):
            return False
        if message.status not in (MessageStatus.SPAM, MessageStatus.HARD_BOUNCED):
            _set_status(conn, self._vault, message, MessageStatus.UNSUB, None, now)
        suppress(
            conn,
            message.recipient,
            scope=message.sender_domain,
            reason=f"unsubscribed ({method})",
            source="unsubscribe",
            now=now,
            message_id=message.id,
            vault=self._vault,
        )
        log.info("unsubscribe recorded", message_id=message.id, method=method)
        return True


def _reason_text(reason: str, status: str, diagnostic: str) -> str:
    text = " ".join(part for part in (reason, status) if part)
    return f"{text}: {diagnostic[:300]}" if diagnostic else text


def _set_status(
    conn: Connection,
    vault: Vault,
    message: MessageFacts,
    status: MessageStatus,
    reply: str | None,
    now: float,
) -> None:
    values: dict[str, Any] = {"status": status.value, "updated_at": now}
    if reply:
        values["last_reply"] = vault.seal(
            conn, reply[:2000].encode(), purpose=PURPOSE_LAST_REPLY, subject=None
        )
    conn.execute(update(messages).where(messages.c.id == message.id).values(**values))
    message.status = status.value


def _event(
    conn: Connection,
    vault: Vault,
    message_id: int,
    event_type: EventType,
    detail: dict[str, Any],
    uid: str,
    now: float,
) -> bool:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    (stored,) = seal_details(conn, vault, [detail])
    stmt = (
        dialect.insert(events)
        .values(message_id=message_id, type=event_type.value, created_at=now, detail=stored, uid=uid)
        .on_conflict_do_nothing(index_elements=["uid"])
        .returning(events.c.id)
    )
    return conn.execute(stmt).first() is not None
