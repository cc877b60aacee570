"""Mailjet's Event API fields for what comes back: ``sent``, ``bounce``, ``spam`` and ``unsub``.

Each function returns the fields Mailjet adds to its common ones (event, time, MessageID, email,
CustomID, Payload, ...) for that event. They are stored under ``detail["mailjet"]`` of the event, so the
webhooks can send them unchanged; the common fields come from the message row.
"""

from __future__ import annotations

from typing import Any

__all__ = ["bounce_fields", "error_of", "related_to_recipient", "sent_fields", "spam_fields", "unsub_fields"]

# Sisimai reason -> Mailjet's (error_related_to, error), from the error table of Mailjet's Event API.
_ERRORS: dict[str, tuple[str, str]] = {
    "userunknown": ("recipient", "user unknown"),
    "hasmoved": ("recipient", "user unknown"),
    "suspend": ("recipient", "mailbox inactive"),
    "mailboxfull": ("recipient", "quota exceeded"),
    "exceedlimit": ("recipient", "quota exceeded"),
    "hostunknown": ("domain", "invalid domain"),
    "notaccept": ("domain", "no mail host"),
    "expired": ("domain", "no mail host"),
    "networkerror": ("domain", "no mail host"),
    "rejected": ("domain", "relay/access denied"),
    "norelaying": ("domain", "relay/access denied"),
    "blocked": ("spam", "sender blocked"),
    "badreputation": ("spam", "sender blocked"),
    "requireptr": ("spam", "sender blocked"),
    "spamdetected": ("spam", "content blocked"),
    "virusdetected": ("spam", "content blocked"),
    "contenterror": ("spam", "content blocked"),
    "filtered": ("spam", "content blocked"),
    "mesgtoobig": ("spam", "content blocked"),
    "authfailure": ("spam", "policy issue"),
    "policyviolation": ("spam", "policy issue"),
    "notcompliantrfc": ("spam", "policy issue"),
    "securityerror": ("spam", "policy issue"),
    "toomanyconn": ("spam", "policy issue"),
    "speeding": ("spam", "policy issue"),
    "syntaxerror": ("system", "protocol issue"),
    "mailererror": ("system", "system issue"),
    "systemerror": ("system", "system issue"),
    "systemfull": ("system", "system issue"),
}
_UNKNOWN = ("system", "system issue")


def error_of(reason: str, reply: str = "") -> tuple[str, str]:
    """Mailjet's ``(error_related_to, error)`` for a Sisimai reason (greylisting recognised by its text)."""
    if "greylist" in reply.lower() or "graylist" in reply.lower():
        return ("domain", "greylisted")
    return _ERRORS.get(reason, _UNKNOWN)


def related_to_recipient(reason: str) -> bool:
    """Whether a failure says something about the address itself (rather than about us or our content).

    Only such soft bounces count towards suppression: a blocklisted sending IP must not get good
    addresses suppressed.
    """
    return _ERRORS.get(reason, _UNKNOWN)[0] in ("recipient", "domain")


def bounce_fields(*, reason: str, hard: bool, blocked: bool, comment: str) -> dict[str, Any]:
    related_to, error = error_of(reason, comment)
    return {
        "event": "bounce",
        "blocked": blocked,
        "hard_bounce": hard,
        "error_related_to": related_to,
        "error": error,
        "comment": comment[:1000],
    }


def sent_fields(smtp_reply: str) -> dict[str, Any]:
    # Mailjet's smtp_reply reads like Postfix's own log: "sent (250 2.0.0 OK ...)".
    return {"event": "sent", "smtp_reply": f"sent ({smtp_reply})"}


def spam_fields(source: str) -> dict[str, Any]:
    return {"event": "spam", "source": source}


def unsub_fields() -> dict[str, Any]:
    # A mailto: unsubscribe has no list, no IP and no browser: the fields exist, empty.
    return {"event": "unsub", "mj_list_id": 0, "ip": "", "geo": "", "agent": ""}
