"""Result type of the bounce classifier."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["BounceResult", "Category", "category_of"]

Category = Literal["hard", "soft", "complaint", "not_bounce"]

# Reasons that say nothing bad about the address: the message arrived, or a person answered it.
_NOT_BOUNCE = frozenset({"delivered", "vacation"})
# Reasons that mean the address itself is dead: retrying can never succeed.
_HARD = frozenset({"userunknown", "hostunknown", "hasmoved"})


def category_of(reason: str, status: str = "", reply_code: str = "") -> Category:
    """Map a Sisimai reason (plus the status for ``notaccept``) to hard/soft/complaint/not_bounce."""
    if reason == "feedback":
        return "complaint"
    if reason in _NOT_BOUNCE:
        return "not_bounce"
    if reason in _HARD:
        return "hard"
    if reason == "notaccept":
        # A null MX or a host that never accepts mail is permanent; a busy one (4xx) is not.
        code = status or reply_code
        return "soft" if code.startswith("4") else "hard"
    return "soft"


@dataclass(frozen=True, slots=True)
class BounceResult:
    """What one bounce, complaint or auto-reply says about one recipient.

    ``recipient`` is the failed address as the reporting MTA named it (Final-Recipient, or the address
    found in the text), ``""`` when none could be found. ``verp_address`` is the first address seen in
    the bounce that has the shape of a mailstack VERP return path (``b-<id36>-<mac>@...``): the envelope
    recipient of the bounce, its ``To``/``Delivered-To`` or the ``Return-Path`` of the returned message.
    Check it with :func:`mailstack.compose.parse_verp`; when that fails, fall back to
    ``original_message_id`` (the Message-ID of the returned message).
    """

    recipient: str
    category: Category
    reason: str
    status: str = ""
    reply_code: str = ""
    diagnostic: str = ""
    action: str = ""
    smtp_command: str = ""
    remote_mta: str = ""
    original_recipient: str = ""
    original_message_id: str = ""
    verp_address: str = ""
    feedback_type: str = ""

    def to_json(self) -> dict[str, str]:
        """All fields as a JSON-ready dict of strings."""
        return asdict(self)
