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

from sqlalchemy import Connection

from mailstack.config import FeedbackSettings
from mailstack.model import SETTLED_STATUSES, EventType, MessageStatus
from mailstack.observability import get_logger
from mailstack.storage import GLOBAL_SCOPE, Store, UniqueEvent

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

    def __init__(self, settings: FeedbackSettings, store: Store) -> None:
        """``store`` holds the messages (recipients sealed, replies sealed: they quote addresses) and the
        suppression list."""
        self._settings = settings
        self.store = store
        self._messages = store.messages
        self._suppressions = store.suppressions

    def load(self, conn: Connection, message_ids: Iterable[int]) -> dict[int, MessageFacts]:
        """The messages that still exist among ``message_ids`` (an erased recipient's are left out)."""
        return {
            message_id: MessageFacts(m.id, m.recipient, m.sender, m.status)
            for message_id, m in self._messages.outlines(conn, message_ids).items()
        }

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
        inserted = self._messages.record_unique_events(
            conn,
            [
                UniqueEvent(report.message.id, kind, detail, report.uid)
                for report, kind, detail in zip(reports, kinds, details, strict=True)
            ],
            now=now,
        )
        changed = []
        for report in reports:
            if report.uid in inserted and report.message.status not in SETTLED_STATUSES:
                status = MessageStatus.SENT if report.delivered else MessageStatus.DEFERRED
                report.message.status = status.value
                changed.append((report.message.id, status, report.reply))
        self._messages.update_statuses_unless(conn, changed, unless=SETTLED_STATUSES, now=now)
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
        if not self._event(conn, message.id, EventType.BOUNCE, detail, uid, now):
            return False
        status = MessageStatus.HARD_BOUNCED if bounce.hard else MessageStatus.SOFT_BOUNCED
        self._set_status(conn, message, status, reply, now)
        if bounce.hard:
            self._suppressions.suppress(
                conn,
                message.recipient,
                scope=GLOBAL_SCOPE,
                reason=_reason_text(bounce.reason, bounce.status, bounce.diagnostic),
                source="hard_bounce",
                now=now,
                message_id=message.id,
            )
        elif blocked:
            days = self._settings.soft_bounce_suppression_days
            self._suppressions.suppress(
                conn,
                message.recipient,
                scope=GLOBAL_SCOPE,
                reason=f"{self._settings.soft_bounce_limit} soft bounces within "
                f"{self._settings.soft_bounce_days:g} days (last: {bounce.reason})",
                source="soft_bounce_limit",
                now=now,
                expires_at=now + days * _DAY if days else None,
                message_id=message.id,
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
        count = self._suppressions.note_soft_bounce(
            conn, message.recipient, message.id, now=now, window=window
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
        if not self._event(conn, message.id, EventType.SPAM, detail, uid, now):
            return False
        self._set_status(conn, message, MessageStatus.SPAM, None, now)
        self._suppressions.suppress(
            conn,
            message.recipient,
            scope=GLOBAL_SCOPE,
            reason=f"spam complaint ({source})",
            source="complaint",
            now=now,
            message_id=message.id,
        )
        log.info("complaint recorded", message_id=message.id, source=source)
        return True

    def unsubscribe(
        self, conn: Connection, message: MessageFacts, *, method: str, uid: str, now: float
    ) -> bool:
        """The recipient unsubscribed: no more mail to them from this message's sender domain."""
        detail = {"mailjet": unsub_fields(), "method": method}
        if not self._event(conn, message.id, EventType.UNSUB, detail, uid, now):
            return False
        if message.status not in (MessageStatus.SPAM, MessageStatus.HARD_BOUNCED):
            self._set_status(conn, message, MessageStatus.UNSUB, None, now)
        self._suppressions.suppress(
            conn,
            message.recipient,
            scope=message.sender_domain,
            reason=f"unsubscribed ({method})",
            source="unsubscribe",
            now=now,
            message_id=message.id,
        )
        log.info("unsubscribe recorded", message_id=message.id, method=method)
        return True

    def _set_status(
        self, conn: Connection, message: MessageFacts, status: MessageStatus, reply: str | None, now: float
    ) -> None:
        self._messages.set_status(conn, message.id, status, reply=reply, now=now)
        message.status = status.value

    def _event(
        self,
        conn: Connection,
        message_id: int,
        event_type: EventType,
        detail: dict[str, Any],
        uid: str,
        now: float,
    ) -> bool:
        """Record the event unless its uid is known; whether it was new."""
        return bool(
            self._messages.record_unique_events(
                conn, [UniqueEvent(message_id, event_type, detail, uid)], now=now
            )
        )


def _reason_text(reason: str, status: str, diagnostic: str) -> str:
    text = " ".join(part for part in (reason, status) if part)
    return f"{text}: {diagnostic[:300]}" if diagnostic else text
