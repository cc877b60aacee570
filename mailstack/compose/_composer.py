"""compose(): one Envelope in, one RFC 5322 message (plus its SMTP envelope) out."""

from __future__ import annotations

import email.utils
import re
import uuid
from datetime import UTC, datetime

from mailstack.compose._errors import ComposeError
from mailstack.compose._headers import (
    addr_spec,
    address_list_tokens,
    check_field,
    first_token_room,
    fold,
    mailbox_tokens,
    unstructured_tokens,
)
from mailstack.compose._mime import build_body
from mailstack.compose._policy import render_user_headers
from mailstack.compose._raw import compose_raw
from mailstack.compose._types import ComposedMessage, ComposeSettings
from mailstack.compose._verp import verp_address
from mailstack.model import Address, Envelope, MessageSpec

__all__ = ["compose"]

_ID_LEFT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _same_mailbox(a: Address, b: Address) -> bool:
    a_local, _, a_domain = a.email.rpartition("@")
    b_local, _, b_domain = b.email.rpartition("@")
    return a_local == b_local and a_domain.lower() == b_domain.lower()


def _is_bulk(spec: MessageSpec) -> bool:
    return spec.bulk or bool(spec.campaign)


def _message_id(envelope: Envelope, settings: ComposeSettings) -> str:
    left = envelope.message_uuid or uuid.uuid4().hex
    check_field(left, "message_uuid")
    if _ID_LEFT.fullmatch(left) is None:
        raise ComposeError(f"message_uuid {left!r} cannot be used in a Message-ID")
    # The numeric id makes it unique per recipient copy even if a uuid were shared by a whole message.
    return f"<{left}.{envelope.message_id}@{settings.hostname}>"


def _list_unsubscribe(envelope: Envelope, settings: ComposeSettings) -> list[str]:
    token = settings.tokens.sign("unsubscribe", envelope.message_id)
    entries: list[str] = []
    if settings.unsubscribe_base_url is not None:
        entries.append(f"<{settings.unsubscribe_base_url}/unsubscribe/{token}>")
    if settings.unsubscribe_mailto:
        entries.append(f"<mailto:unsubscribe+{token}@{settings.bounce_domain}>")
    if not entries:
        return []
    lines = [fold("List-Unsubscribe", [e + "," for e in entries[:-1]] + entries[-1:], "List-Unsubscribe")]
    if settings.one_click:
        # RFC 8058 3.1: the POST target is the https URI, so one-click needs one.
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    return lines


def compose(envelope: Envelope, settings: ComposeSettings, *, now: datetime | None = None) -> ComposedMessage:
    """Build the complete message for one recipient copy.

    ``now`` sets the Date header (naive datetimes are taken as UTC). Raises :class:`ComposeError` for
    anything that cannot be rendered safely (header injection, reserved or malformed headers, bad
    addresses, MIME types or content ids).
    """
    spec = envelope.spec
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if spec.raw is not None:
        # Submitted over SMTP: the client's own MIME message, fixed up but never rebuilt.
        return compose_raw(envelope, settings, now=now, message_id=_message_id(envelope, settings))
    # The one header policy (mailstack.compose._policy): the Send API checked the same at acceptance.
    user_lines, user_names = render_user_headers(
        spec.headers, bulk=_is_bulk(spec), subject=bool(spec.subject), reply_to=spec.reply_to is not None
    )

    lines = [f"Date: {email.utils.format_datetime(now)}\r\n"]
    lines.append(fold("From", mailbox_tokens(spec.sender, "From"), "From"))
    if spec.envelope_sender is not None and not _same_mailbox(spec.envelope_sender, spec.sender):
        lines.append(fold("Sender", mailbox_tokens(spec.envelope_sender, "Sender"), "Sender"))
    if spec.reply_to is not None:
        lines.append(fold("Reply-To", mailbox_tokens(spec.reply_to, "ReplyTo"), "ReplyTo"))
    if spec.to:
        lines.append(fold("To", address_list_tokens(spec.to, "To"), "To"))
    elif not spec.cc:
        # Only Bcc recipients: an empty group keeps a To header, which filters expect (RFC 5322 A.1.3).
        lines.append("To: undisclosed-recipients:;\r\n")
    if spec.cc:
        lines.append(fold("Cc", address_list_tokens(spec.cc, "Cc"), "Cc"))
    for i, bcc in enumerate(spec.bcc):
        # Never rendered, but a poisoned Bcc entry should fail every copy alike, not only its own.
        check_field(bcc.email, f"Bcc[{i}].Email")
        check_field(bcc.name, f"Bcc[{i}].Name")
    if spec.subject or "subject" not in user_names:
        check_field(spec.subject, "Subject")
        lines.append(
            fold("Subject", unstructured_tokens(spec.subject, first_token_room("Subject")), "Subject")
        )
    message_id = _message_id(envelope, settings)
    lines.append(f"Message-ID: {message_id}\r\n")
    if _is_bulk(spec):
        lines.extend(_list_unsubscribe(envelope, settings))
    lines.extend(user_lines)
    lines.append("MIME-Version: 1.0\r\n")
    root = build_body(spec)
    lines.append(root.headers)
    head = "".join(lines)

    rcpt_to = addr_spec(envelope.recipient.email, "Recipient.Email")
    try:
        mail_from = verp_address(envelope.message_id, settings)
    except ValueError as exc:
        raise ComposeError(f"message_id: {exc}") from None
    data = b"".join([head.encode("utf-8"), b"\r\n", root.body])
    if not data.endswith(b"\r\n"):
        data += b"\r\n"  # SMTP DATA and DKIM want the last line terminated
    return ComposedMessage(
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        data=data,
        message_id=message_id,
        # Names and subjects are always encoded words and domains A-labels, so only an internationalised
        # local part can make the header block (or the recipient) non-ASCII.
        smtputf8=not (head.isascii() and rcpt_to.isascii()),
    )
