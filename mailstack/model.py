"""Domain types shared by every stage of the pipeline.

A :class:`MessageSpec` is one entry of a Send API ``Messages[]`` array after validation: its content is
shared by all its recipients. Each recipient becomes one :class:`Envelope` — one composed, signed and
delivered copy with its own MessageID, as Mailjet does.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Address",
    "Attachment",
    "Envelope",
    "EventType",
    "MessageSpec",
    "MessageStatus",
    "RecipientKind",
]


@dataclass(frozen=True, slots=True)
class Address:
    """A validated mailbox: ``email`` is addr-spec only, ``name`` the display name (may be empty)."""

    email: str
    name: str = ""

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2].lower()

    def to_json(self) -> dict[str, str]:
        return {"Email": self.email, "Name": self.name}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Address:
        return cls(email=data["Email"], name=data.get("Name", ""))


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to the message; ``content_id`` is set for inline parts referenced as ``cid:``."""

    filename: str
    content_type: str
    content: bytes
    content_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "Filename": self.filename,
            "ContentType": self.content_type,
            "Base64Content": base64.b64encode(self.content).decode("ascii"),
            "ContentID": self.content_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attachment:
        return cls(
            filename=data["Filename"],
            content_type=data["ContentType"],
            content=base64.b64decode(data["Base64Content"]),
            content_id=data.get("ContentID"),
        )


class RecipientKind(StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """The content of one message, validated and free of header-injection vectors."""

    sender: Address  # the From header
    to: tuple[Address, ...]
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: Address | None = None
    envelope_sender: Address | None = None  # Mailjet's "Sender": the Sender header when it differs
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    inline_attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # extra headers, already validated
    custom_id: str = ""
    event_payload: str = ""
    campaign: str = ""
    track_opens: str = "account_default"
    track_clicks: str = "account_default"
    priority: int = 2
    template_language: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    # Mailjet's TemplateErrorReporting (who gets a report of a template error) and TemplateErrorDeliver
    # (send the message anyway, unrendered, instead of failing it).
    template_error_reporting: Address | None = None
    template_error_deliver: bool = False
    bulk: bool = False  # marketing mail: gets List-Unsubscribe headers
    # A message submitted over SMTP, kept as the client's MIME bytes (Bcc, DKIM-Signature and Return-Path
    # stripped, Date added): compose only fixes it up. The fields above then describe it (sender = its
    # From, to/cc/bcc = its envelope recipients by kind, subject = its Subject) for storage and status.
    raw: bytes | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Serialise for storage; :meth:`from_json` is its inverse."""
        return {
            "From": self.sender.to_json(),
            "To": [a.to_json() for a in self.to],
            "Cc": [a.to_json() for a in self.cc],
            "Bcc": [a.to_json() for a in self.bcc],
            "ReplyTo": self.reply_to.to_json() if self.reply_to else None,
            "Sender": self.envelope_sender.to_json() if self.envelope_sender else None,
            "Subject": self.subject,
            "TextPart": self.text,
            "HTMLPart": self.html,
            "Attachments": [a.to_json() for a in self.attachments],
            "InlinedAttachments": [a.to_json() for a in self.inline_attachments],
            "Headers": [list(h) for h in self.headers],
            "CustomID": self.custom_id,
            "EventPayload": self.event_payload,
            "CustomCampaign": self.campaign,
            "TrackOpens": self.track_opens,
            "TrackClicks": self.track_clicks,
            "Priority": self.priority,
            "TemplateLanguage": self.template_language,
            "Variables": self.variables,
            "TemplateErrorReporting": (
                self.template_error_reporting.to_json() if self.template_error_reporting else None
            ),
            "TemplateErrorDeliver": self.template_error_deliver,
            "Bulk": self.bulk,
            # Only present for submitted messages, so stored API messages keep their exact shape.
            **({"Raw": base64.b64encode(self.raw).decode("ascii")} if self.raw is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageSpec:
        def addr(value: dict[str, str] | None) -> Address | None:
            return Address.from_json(value) if value else None

        sender = Address.from_json(data["From"])
        return cls(
            sender=sender,
            to=tuple(Address.from_json(a) for a in data["To"]),
            cc=tuple(Address.from_json(a) for a in data["Cc"]),
            bcc=tuple(Address.from_json(a) for a in data["Bcc"]),
            reply_to=addr(data["ReplyTo"]),
            envelope_sender=addr(data["Sender"]),
            subject=data["Subject"],
            text=data["TextPart"],
            html=data["HTMLPart"],
            attachments=tuple(Attachment.from_json(a) for a in data["Attachments"]),
            inline_attachments=tuple(Attachment.from_json(a) for a in data["InlinedAttachments"]),
            headers=tuple((h[0], h[1]) for h in data["Headers"]),
            custom_id=data["CustomID"],
            event_payload=data["EventPayload"],
            campaign=data["CustomCampaign"],
            track_opens=data["TrackOpens"],
            track_clicks=data["TrackClicks"],
            priority=data["Priority"],
            template_language=data["TemplateLanguage"],
            variables=data["Variables"],
            template_error_reporting=addr(data.get("TemplateErrorReporting")),
            template_error_deliver=data.get("TemplateErrorDeliver", False),
            bulk=data["Bulk"],
            raw=base64.b64decode(data["Raw"]) if data.get("Raw") is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """One recipient's copy of a message: what compose, sign and delivery work on."""

    message_id: int  # Mailjet's numeric MessageID
    message_uuid: str
    recipient: Address
    kind: RecipientKind
    spec: MessageSpec


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"  # dead-lettered or refused permanently by the relay
    BLOCKED = "blocked"
    # What came back after delivery (mailstack.feedback), in Mailjet's message-status vocabulary.
    HARD_BOUNCED = "hardbounced"
    SOFT_BOUNCED = "softbounced"
    SPAM = "spam"
    UNSUB = "unsub"


# Status precedence, defined once. Delivery works on PENDING messages only; a FINAL one is never sent
# again. What came back after delivery (FEEDBACK) is never overwritten by the delivery path, and a
# delivery report from Postfix's log never overwrites a SETTLED status (feedback, or blocked).
PENDING_STATUSES = frozenset({MessageStatus.QUEUED, MessageStatus.DEFERRED})
FINAL_STATUSES = frozenset(MessageStatus) - PENDING_STATUSES
FEEDBACK_STATUSES = frozenset(
    {MessageStatus.HARD_BOUNCED, MessageStatus.SOFT_BOUNCED, MessageStatus.SPAM, MessageStatus.UNSUB}
)
SETTLED_STATUSES = FEEDBACK_STATUSES | {MessageStatus.BLOCKED}


class EventType(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    BLOCKED = "blocked"
    # Engagement, recorded by the tracking endpoints (mailstack.tracking) and the conversions API.
    OPEN = "open"
    CLICK = "click"
    CONVERSION = "conversion"
    # Feedback (mailstack.feedback): the destination's verdict from Postfix's log, bounces, complaints.
    DELIVERED = "delivered"  # the destination server accepted it (Mailjet's "sent")
    BOUNCE = "bounce"
    SPAM = "spam"
    UNSUB = "unsub"
