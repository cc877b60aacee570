"""Take a bounce apart: human-readable text, delivery-status fields, feedback reports, returned headers."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
from dataclasses import dataclass, field
from email.header import Header, decode_header
from email.message import Message
from email.parser import HeaderParser

__all__ = ["Field", "Parsed", "decode_header_value", "parse", "parse_fields", "split_returned"]

Field = tuple[str, str]  # (lower-case name, unfolded value)

_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status", "text/delivery-status"})
_FEEDBACK_TYPES = frozenset({"message/feedback-report", "text/feedback-report"})
_HEADERS_TYPES = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header", "message/global-headers"}
)
_RETURNED_TYPES = frozenset({"message/rfc822", "message/global", "message/partial"})
_MAX_TEXT = 256 * 1024  # a bounce's own text is short; anything longer is an attachment we need not read
_MAX_DEPTH = 12
# A tag ends at its ">" or where the next one starts: each character is looked at a bounded number of
# times, however many "<" an unclosed document has.
_TAGS = re.compile(r"<[^<>]*>")
_SCRIPT = re.compile(r"<(script|style)\b", re.I)
_BR = re.compile(r"<(?:br|/p|/div|/tr|/li|/h\d|p|div|tr|li)\b[^<>]*>", re.I)
_ENTITIES = {"&nbsp;": " ", "&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&#39;": "'"}
_ENTITY = re.compile("|".join(map(re.escape, _ENTITIES)))
_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]*(.*)$")
_HEADER_PARSER = HeaderParser(policy=email.policy.compat32)


@dataclass(slots=True)
class Parsed:
    """The pieces of a bounce the classifier reads."""

    message: Message
    texts: list[str] = field(default_factory=list)  # notification text parts, in order
    html: list[str] = field(default_factory=list)  # text of HTML parts (used when there is no plain text)
    dsn: list[str] = field(default_factory=list)  # raw text of delivery-status parts
    feedback: list[list[Field]] = field(default_factory=list)  # fields of feedback-report parts
    returned: list[Message] = field(default_factory=list)  # returned messages or their headers
    report_type: str = ""


def decode_header_value(value: object) -> str:
    """An RFC 2047-decoded, unfolded header value; never raises."""
    if value is None:
        return ""
    text: str | None = None
    if isinstance(value, Header):
        # Raw 8-bit bytes in a header (RFC 6532 UTF-8, or a legacy charset): compat32 keeps them as
        # unknown-8bit, which str() would turn into replacement characters.
        with contextlib.suppress(Exception):  # then the plain rendering below
            text = _decoded(value)
    if text is None:
        text = str(value)
        if "=?" in text:
            with contextlib.suppress(Exception):  # malformed encoded words: keep the raw text
                text = _decoded(text)
    return re.sub(r"\r?\n[ \t]*", " ", text).strip()


def _decoded(value: str | Header) -> str:
    """``value``'s chunks (RFC 2047 encoded words, raw bytes) decoded and joined."""
    return "".join(
        _decode_bytes(chunk, charset or "ascii") if isinstance(chunk, bytes) else chunk
        for chunk, charset in decode_header(value)
    )


def _decode_bytes(data: bytes, charset: str) -> str:
    charset = (charset or "").strip().strip('"').lower() or "utf-8"
    if charset in ("us-ascii", "ascii", "unknown-8bit", "x-unknown", "8bit", "binary"):
        charset = "utf-8"
    elif charset.startswith("iso-2022") and not data.isascii():
        # ISO-2022 charsets are 7-bit: 8-bit bytes mean the label is wrong (often text re-encoded
        # as UTF-8 on the way, the label left as it was).
        charset = "utf-8"
    try:
        return data.decode(charset, "replace")
    except (LookupError, UnicodeError):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _part_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if payload is None:
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    if not isinstance(payload, bytes):
        return str(payload)
    payload = payload[:_MAX_TEXT]
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    return _decode_bytes(payload, charset)


def _without_scripts(html: str) -> str:
    """``html`` without <script>/<style> elements, in one pass (an unclosed one runs to the end)."""
    out: list[str] = []
    position = 0
    lowered = html.lower()
    while (match := _SCRIPT.search(html, position)) is not None:
        out.append(html[position : match.start()])
        end = lowered.find(f"</{match.group(1).lower()}", match.end())
        if end < 0:
            return "".join(out)
        close = lowered.find(">", end)
        position = len(html) if close < 0 else close + 1
    out.append(html[position:])
    return "".join(out)


def _html_text(html: str) -> str:
    text = _BR.sub("\n", _without_scripts(html))
    text = _TAGS.sub("", text)
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(0)], text)


def _blocks_text(part: Message) -> str:
    """Text of a delivery-status part, which compat32 has already split into header blocks."""
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, list):
        return ""
    chunks = []
    for block in payload:
        if isinstance(block, Message):
            lines = [f"{k}: {v}" for k, v in block.items()]
            body = block.get_payload()
            if isinstance(body, str) and body.strip():
                lines.append(body)
            chunks.append("\n".join(lines))
    return "\n\n".join(chunks)


def _walk(part: Message, out: Parsed, depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    try:
        ctype = part.get_content_type()
    except Exception:
        ctype = "text/plain"
    if ctype in _DSN_TYPES:
        cte = str(part.get("content-transfer-encoding", "")).lower()
        out.dsn.append(_part_text(part) if cte in ("base64", "quoted-printable") else _blocks_text(part))
        return
    if ctype in _FEEDBACK_TYPES:
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            out.feedback.append([(k.lower(), decode_header_value(v)) for k, v in payload[0].items()])
        else:
            out.feedback.append(parse_fields(_part_text(part))[0] if isinstance(payload, str) else [])
        return
    if ctype in _RETURNED_TYPES:
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            out.returned.append(payload[0])
        elif isinstance(payload, str):
            out.returned.append(_HEADER_PARSER.parsestr(_part_text(part)))
        return
    if ctype in _HEADERS_TYPES:
        out.returned.append(_HEADER_PARSER.parsestr(_part_text(part)))
        return
    if part.is_multipart():
        payload = part.get_payload()
        if isinstance(payload, list):
            for sub in payload:
                if isinstance(sub, Message):
                    _walk(sub, out, depth + 1)
        return
    maintype = ctype.split("/", 1)[0]
    if maintype == "multipart" and isinstance(part.get_payload(), str):
        # A multipart whose boundary never appears: its body is all text.
        out.texts.append(_part_text(part))
        return
    disposition = str(part.get("content-disposition", "")).lower()
    if maintype == "text" or (ctype in ("application/json", "application/octet-stream") and depth == 0):
        if "attachment" in disposition and depth > 0 and ctype != "text/plain":
            return
        text = _part_text(part)
        if ctype == "text/html":
            out.html.append(_html_text(text))
        elif ctype in ("text/plain", "text/enriched", "application/json") or depth == 0:
            out.texts.append(text)


def parse(raw: bytes) -> Parsed:
    """Parse ``raw`` (compat32: fast and lenient) and sort its parts."""
    if raw.startswith(b"From ") and b"\n" in raw[:1024]:
        raw = raw.split(b"\n", 1)[1]  # an mbox separator line, not a header
    msg = email.message_from_bytes(raw.lstrip(b"\r\n\t "), policy=email.policy.compat32)
    out = Parsed(message=msg)
    try:
        param = msg.get_param("report-type") if msg.get_content_type() == "multipart/report" else None
    except Exception:
        param = None
    out.report_type = param.strip().lower() if isinstance(param, str) else ""
    _walk(msg, out, 0)
    return out


def parse_fields(text: str) -> list[list[Field]]:
    """Split ``Name: value`` text (a delivery-status body) into blocks of unfolded fields."""
    blocks: list[list[Field]] = []
    current: list[Field] = []
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        if line[0] in " \t" and current:
            name, value = current[-1]
            current[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        match = _FIELD.match(line)
        if match:
            current.append((match.group(1).lower(), match.group(2).strip()))
        elif current:
            # A continuation some MTAs forget to indent.
            name, value = current[-1]
            current[-1] = (name, f"{value} {line.strip()}".strip())
    if current:
        blocks.append(current)
    return blocks


# Lines that introduce the copy of the original message in a plain-text bounce.
_SEPARATOR = re.compile(
    r"^[ \t]*(?:"
    # Decorated: "------ This is a copy of the message, including all the headers. ------"
    # (possessive run and a bounded gap: a line of 80,000 dashes must not be re-read from every dash)
    r"[-=_*#]{2,}+.{0,200}?(?:original|returned|unsent|copy of|headers?\b|below this line|message follows|"
    r"undelivered|rejected message|message text)"
    r"|"
    # Undecorated sentences that announce the copy.
    r"below this line is a copy|(?:the )?(?:original )?message headers? follows?|"
    r"(?:the )?original message (?:follows|headers? follows?|is attached|is below)|here is a copy of|"
    r"this is a copy of the|headers of the original message|the header of the original message is|"
    r"included is a copy of|a copy of the original message|(?:original|returned) message:?[ \t]*$|"
    r"your message (?:reads|follows|is attached)|content-type:[ \t]*message/rfc822"
    r")",
    re.I | re.M,
)
_HEADER_START = re.compile(
    r"^(?:return-path|received|message-id|from|to|subject|date|dkim-signature|mime-version|"
    r"content-type|delivered-to|reply-to|x-[a-z0-9-]+)[ \t]*:[ \t]*\S",
    re.I,
)
_ANY_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9-]*[ \t]*:")
_DSN_FIELD = re.compile(
    r"^(?:final-recipient|original-recipient|action|status|diagnostic-code|remote-mta|reporting-mta|"
    r"last-attempt-date|arrival-date|received-from-mta|x-[a-z0-9-]*-(?:sender|queue-id|recipient))\s*:",
    re.I,
)


def split_returned(text: str) -> tuple[str, str]:
    """Split a plain-text bounce into (notification, returned message) at the first copy marker."""
    lines = text.splitlines(keepends=True)
    offset = 0
    for i, line in enumerate(lines):
        if i > 0 and _SEPARATOR.match(line):
            return text[:offset], text[offset + len(line) :]
        if (
            _HEADER_START.match(line)
            and not _DSN_FIELD.match(line)
            and (i == 0 or not lines[i - 1].strip() or _SEPARATOR.match(lines[i - 1]))
            and _looks_like_headers(lines, i)
        ):
            return text[:offset], text[offset:]
        offset += len(line)
    return text, ""


def _looks_like_headers(lines: list[str], start: int) -> bool:
    """At least three header lines in a row (continuations allowed) starting at ``start``."""
    count = 0
    for line in lines[start : start + 40]:
        if not line.strip():
            break
        if line[0] in " \t":
            continue
        if not _ANY_HEADER.match(line) or _DSN_FIELD.match(line):
            return False
        count += 1
        if count >= 3:
            return True
    return False
