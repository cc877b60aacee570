"""Submitted messages (SMTP ingress): the client's own MIME message, checked and fixed up, never rebuilt.

* :func:`parse_submission` runs at ingress. It refuses what is malformed or ambiguous — bare CR or LF,
  header lines that are not ``Name: value`` fields, whitespace-only continuation lines, NUL, over-long
  lines, header bytes that are not UTF-8, a From that is not exactly one mailbox, duplicated From, To,
  Subject, Date, Message-ID… (receivers, filters and DKIM verifiers could each pick another one) — then
  strips Bcc, Resent-Bcc, DKIM-Signature and Return-Path and adds Date when missing. Body and remaining
  header fields are kept byte for byte.
* :func:`compose_raw` runs at delivery for each recipient's copy: it checks and strips again (defence in
  depth: a stored message may predate a rule), adds the copy's own Message-ID when the client gave none,
  and returns the VERP return path, exactly as :func:`compose` does for API mail.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import AddressHeader, HeaderRegistry

from mailstack.compose._errors import ComposeError
from mailstack.compose._headers import HARD_LIMIT, addr_spec, domain_to_ascii
from mailstack.compose._policy import AT_MOST_ONCE
from mailstack.compose._types import ComposedMessage, ComposeSettings
from mailstack.compose._verp import verp_address
from mailstack.model import Address, Envelope

__all__ = ["Submission", "compose_raw", "parse_submission"]

CRLF = b"\r\n"
# RFC 5322 ftext (printable ASCII except ":") immediately followed by the colon: "Subject : x" (obsolete
# syntax) is refused because parsers disagree on it.
_FIELD_START = re.compile(rb"[!-9;-~]+:")
# Removed from every submitted message: blind copies must stay blind, a client's DKIM signature would
# break or mislead once we sign, and the return path is ours (VERP) and set by the final MTA.
_STRIPPED = frozenset({"bcc", "resent-bcc", "dkim-signature", "return-path"})
_HEADERS = HeaderRegistry()


@dataclass(frozen=True, slots=True)
class _Field:
    name: str  # lower-case
    raw: bytes  # the whole field as submitted: every line, CRLF-terminated

    @property
    def value(self) -> str:
        """The unfolded value (UTF-8, validated when the field was read)."""
        text = self.raw.decode("utf-8").partition(":")[2]
        return text.replace("\r\n", "").strip(" \t")


@dataclass(frozen=True, slots=True)
class Submission:
    """A submitted message as it is stored, with what ingress needs to know about it.

    ``to`` and ``cc`` hold the addresses of the To and Cc headers, lower-cased: they tell an envelope
    recipient's kind (To, Cc, or else Bcc), as Mailjet reports it.
    """

    data: bytes
    sender: Address
    to: frozenset[str]
    cc: frozenset[str]
    subject: str


def _has_bare_line_ending(data: bytes) -> bool:
    pairs = data.count(CRLF)
    return data.count(b"\r") != pairs or data.count(b"\n") != pairs


def _read(data: bytes) -> tuple[list[_Field], bytes]:
    """Split and check the header block; returns its fields and the body (bytes after the blank line)."""
    if _has_bare_line_ending(data):
        raise ComposeError("the message contains a bare CR or LF; every line must end with CRLF")
    if not data or data.startswith(CRLF):
        raise ComposeError("the message has no header fields")
    end = data.find(b"\r\n\r\n")
    if end < 0:  # all header, no body (RFC 5322 allows it)
        head, body = data if data.endswith(CRLF) else data + CRLF, b""
    else:
        head, body = data[: end + 2], data[end + 4 :]
    if b"\x00" in head:
        raise ComposeError("the header contains NUL")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        raise ComposeError("the header is neither ASCII nor UTF-8 (RFC 6532)") from None
    fields: list[tuple[str, list[bytes]]] = []
    for number, line in enumerate(head[:-2].split(CRLF), 1):
        if len(line) > HARD_LIMIT:
            raise ComposeError(f"header line {number} is longer than {HARD_LIMIT} octets")
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise ComposeError("the header starts with a continuation line")
            if not line.strip(b" \t"):
                # Some parsers end the header at a whitespace-only line, others fold it: ambiguous.
                raise ComposeError(f"header line {number} holds only whitespace")
            fields[-1][1].append(line)
            continue
        match = _FIELD_START.match(line)
        if match is None:
            raise ComposeError(f"header line {number} is not a 'Name: value' field")
        fields.append((match.group()[:-1].decode("ascii").lower(), [line]))
    return [_Field(name, CRLF.join(lines) + CRLF) for name, lines in fields], body


def _check_counts(fields: list[_Field]) -> None:
    seen: dict[str, int] = {}
    for field in fields:
        if field.name in AT_MOST_ONCE:  # the rule API mail's user headers follow too
            seen[field.name] = seen.get(field.name, 0) + 1
            if seen[field.name] > 1:
                raise ComposeError(f"the header has more than one {field.name.title()} field")
    if "from" not in seen:
        raise ComposeError("the message has no From field")


def _mailboxes(field: _Field) -> tuple[list[Address], bool]:
    """The mailboxes of an address field, and whether it parsed without defects."""
    parsed = _HEADERS(field.name, field.value)
    if not isinstance(parsed, AddressHeader):  # pragma: no cover - the registry maps address fields
        return [], False
    mailboxes = [Address(a.addr_spec, a.display_name) for a in parsed.addresses]
    return mailboxes, not parsed.defects


def _sender(field: _Field) -> Address:
    mailboxes, clean = _mailboxes(field)
    if not clean or len(mailboxes) != 1:
        raise ComposeError("From must be exactly one valid mailbox")
    sender = mailboxes[0]
    local, at, domain = sender.email.rpartition("@")
    if not at or not local or not domain:
        raise ComposeError("From must be exactly one valid mailbox")
    try:
        domain_to_ascii(domain)
    except ValueError as exc:
        raise ComposeError(f"From: {exc}") from None
    return sender


def _date_line(now: datetime) -> bytes:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return f"Date: {email.utils.format_datetime(now)}\r\n".encode("ascii")


def parse_submission(data: bytes, *, now: datetime | None = None) -> Submission:
    """Check a submitted message and apply the ingress fix-ups (see the module docstring).

    ``data`` is the message as received after DATA (CRLF line endings, dot-unstuffed). ``now`` dates a
    message that has no Date (naive datetimes are taken as UTC). Raises :class:`ComposeError`.
    """
    fields, body = _read(data)
    _check_counts(fields)
    by_name = {field.name: field for field in fields}
    sender = _sender(by_name["from"])
    recipients: dict[str, frozenset[str]] = {}
    for name in ("to", "cc"):
        field = by_name.get(name)
        mailboxes = _mailboxes(field)[0] if field is not None else []
        recipients[name] = frozenset(m.email.lower() for m in mailboxes)
    subject_field = by_name.get("subject")
    subject = str(_HEADERS("subject", subject_field.value)) if subject_field is not None else ""
    head = [field.raw for field in fields if field.name not in _STRIPPED]
    if "date" not in by_name:
        head.insert(0, _date_line(now or datetime.now(UTC)))
    return Submission(
        data=b"".join([*head, CRLF, body]),
        sender=sender,
        to=recipients["to"],
        cc=recipients["cc"],
        subject=subject,
    )


def compose_raw(
    envelope: Envelope, settings: ComposeSettings, *, now: datetime, message_id: str
) -> ComposedMessage:
    """One recipient's copy of a submitted message (``envelope.spec.raw``), ready for DKIM signing.

    ``message_id`` is used only when the message has no Message-ID of its own. Raises
    :class:`ComposeError` when the stored message fails the ingress checks.
    """
    raw = envelope.spec.raw
    if raw is None:
        raise ComposeError("the message has no submitted content")
    fields, body = _read(raw)
    _check_counts(fields)
    head = [field.raw for field in fields if field.name not in _STRIPPED]
    added: list[bytes] = []
    if not any(field.name == "date" for field in fields):
        added.append(_date_line(now))
    own = next((field.value for field in fields if field.name == "message-id"), None)
    if own:
        message_id = own
    else:
        head = [raw_field for raw_field in head if not raw_field.lower().startswith(b"message-id:")]
        added.append(f"Message-ID: {message_id}\r\n".encode("ascii"))
    header = b"".join([*added, *head])
    rcpt_to = addr_spec(envelope.recipient.email, "Recipient.Email")
    try:
        mail_from = verp_address(envelope.message_id, settings)
    except ValueError as exc:
        raise ComposeError(f"message_id: {exc}") from None
    return ComposedMessage(
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        data=b"".join([header, CRLF, body]),
        message_id=message_id,
        # RFC 6532 headers (raw UTF-8) or an internationalised recipient need SMTPUTF8 from the relay.
        smtputf8=not (header.isascii() and rcpt_to.isascii()),
    )
