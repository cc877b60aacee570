"""The bridge from the unsubscribe endpoints to the suppression list (``mailstack.storage._feedback``).

It does what the feedback code does for a ``mailto:`` unsubscribe (``FeedbackRecorder.unsubscribe``):
suppress the address for the sender's domain, record one ``unsub`` event with Mailjet's fields under
``detail["mailjet"]``, and mark the message ``unsub`` unless a bounce or a complaint came first.
"""

from __future__ import annotations

from sqlalchemy import Connection, update

from mailstack.model import EventType, MessageStatus
from mailstack.privacy import Vault
from mailstack.storage import suppress
from mailstack.storage.schema import messages
from mailstack.tracking import TrackedEvent, store_events

__all__ = ["suppress_unsubscribed"]

# A later unsubscribe does not hide that the message bounced or was reported as spam.
_KEEP = (MessageStatus.SPAM.value, MessageStatus.HARD_BOUNCED.value)


def suppress_unsubscribed(
    conn: Connection,
    *,
    message_id: int,
    email: str,
    sender: str,
    method: str,
    ip: str,
    agent: str,
    now: float,
    vault: Vault,
) -> None:
    """Unsubscribe ``email`` from mail of ``sender``'s domain because of ``message_id``; idempotent."""
    domain = sender.rpartition("@")[2].lower()
    suppress(
        conn,
        email,
        scope=domain,
        reason=f"unsubscribed ({method})",
        source="unsubscribe",
        now=now,
        message_id=message_id,
        vault=vault,
    )
    conn.execute(
        update(messages)
        .where(messages.c.id == message_id, messages.c.status.not_in(_KEEP))
        .values(status=MessageStatus.UNSUB.value, updated_at=now)
    )
    mailjet = {"event": "unsub", "mj_list_id": 0, "ip": ip, "geo": "", "agent": agent}
    detail = {"mailjet": mailjet, "method": method, "ip": ip, "agent": agent}
    # One unsubscription per message, however many times the button is pressed.
    store_events(
        conn, [TrackedEvent(f"unsub:{message_id}", message_id, EventType.UNSUB, now, detail)], vault=vault
    )
