"""Mailjet Event API payloads built from mailstack events.

Every payload has Mailjet's common fields (event, time, MessageID, Message_GUID, email, mj_campaign_id,
mj_contact_id, customcampaign, mj_message_id, CustomID, Payload) and the fields of its type: ``sent``
(smtp_reply), ``open`` (ip, geo, agent), ``click`` (url, ip, geo, agent), ``bounce`` (blocked,
hard_bounce, error_related_to, error, comment), ``blocked`` (error_related_to, error), ``spam`` (source)
and ``unsub`` (mj_list_id, ip, geo, agent). The feedback code stores Mailjet's own fields under
``detail["mailjet"]``; they are used as they are. mailstack's additions (machine opens and scanner
clicks) go under ``mailstack`` so that no Mailjet field changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailstack.model import EventType

__all__ = ["EVENT_TYPES", "MessageInfo", "mailjet_event"]

# Mailjet's Event API types, the ones a callback URL can subscribe to.
EVENT_TYPES: tuple[str, ...] = ("sent", "open", "click", "bounce", "blocked", "spam", "unsub")


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """The message fields every payload carries."""

    message_id: int
    uuid: str
    api_key_id: int
    email: str
    campaign: str
    custom_id: str
    payload: str


def _common(name: str, at: float, message: MessageInfo) -> dict[str, Any]:
    return {
        "event": name,
        "time": int(at),
        "MessageID": message.message_id,
        "Message_GUID": message.uuid,
        "email": message.email,
        "mj_campaign_id": 0,
        "mj_contact_id": 0,
        "customcampaign": message.campaign,
        "mj_message_id": str(message.message_id),
        "CustomID": message.custom_id,
        "Payload": message.payload,
    }


def _mailstack(detail: dict[str, Any]) -> dict[str, Any]:
    extra = {key: detail[key] for key in ("machine", "machine_reason", "proxy") if key in detail}
    return {"mailstack": extra} if extra else {}


def mailjet_event(
    kind: str, at: float, detail: dict[str, Any], message: MessageInfo, *, sent_is_delivery: bool
) -> dict[str, Any] | None:
    """The Event API payload of one event, or None for events the Event API does not report.

    Mailjet's ``sent`` means "the destination accepted it": the ``delivered`` event Postfix's log gives.
    With ``sent_is_delivery`` (the sandbox outbox, where nothing reports back) the relay's acceptance is
    reported instead.
    """
    mailjet = detail.get("mailjet") if isinstance(detail.get("mailjet"), dict) else {}
    assert isinstance(mailjet, dict)
    if kind == EventType.DELIVERED or (kind == EventType.SENT and sent_is_delivery):
        reply = str(detail.get("smtp_reply", ""))
        return {
            **_common("sent", at, message),
            "smtp_reply": mailjet.get("smtp_reply", f"sent ({reply})" if reply else "sent"),
        }
    if kind == EventType.OPEN:
        return {
            **_common("open", at, message),
            "ip": detail.get("ip", ""),
            "geo": "",
            "agent": detail.get("agent", ""),
            **_mailstack(detail),
        }
    if kind == EventType.CLICK:
        return {
            **_common("click", at, message),
            "url": detail.get("url", ""),
            "ip": detail.get("ip", ""),
            "geo": "",
            "agent": detail.get("agent", ""),
            **_mailstack(detail),
        }
    if kind == EventType.BOUNCE:
        return {
            **_common("bounce", at, message),
            "blocked": bool(mailjet.get("blocked", False)),
            "hard_bounce": bool(mailjet.get("hard_bounce", detail.get("category") == "hard")),
            "error_related_to": mailjet.get("error_related_to", "recipient"),
            "error": mailjet.get("error", ""),
            "comment": mailjet.get("comment", ""),
        }
    if kind == EventType.FAILED:
        # The relay refused the message for good, or it ran out of retries: Mailjet reports a bounce.
        exhausted = bool(detail.get("dead_letter", False))
        return {
            **_common("bounce", at, message),
            "blocked": False,
            "hard_bounce": not exhausted,
            "error_related_to": "system",
            "error": "retries exhausted" if exhausted else "relay refused",
            "comment": str(detail.get("smtp_reply", ""))[:1000],
        }
    if kind == EventType.BLOCKED:
        return {
            **_common("blocked", at, message),
            "error_related_to": mailjet.get("error_related_to", "mailjet"),
            "error": mailjet.get("error", "preblocked"),
        }
    if kind == EventType.SPAM:
        return {**_common("spam", at, message), "source": mailjet.get("source", detail.get("source", ""))}
    if kind == EventType.UNSUB:
        return {
            **_common("unsub", at, message),
            "mj_list_id": mailjet.get("mj_list_id", 0),
            "ip": mailjet.get("ip", detail.get("ip", "")),
            "geo": mailjet.get("geo", ""),
            "agent": mailjet.get("agent", detail.get("agent", "")),
        }
    return None
