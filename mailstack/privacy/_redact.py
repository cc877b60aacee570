"""Taking one person's address out of data that also belongs to others (used by erasure).

A content shared by several recipients, an idempotent Send API response or a grouped webhook payload
cannot be crypto-shredded with one person's key: the address is taken out and the rest sealed again.

What is found, and how it is taken out:

- **JSON** (contents' MessageSpec, idempotent responses, webhook payloads): an object in a list that is
  about the person (its ``Email``/``email`` is the address, or its ``MessageID`` one of their messages)
  is dropped — a recipient entry, an event; every other string has the address replaced by
  :data:`ERASED_ADDRESS`.
- **A MIME message** (``Raw`` of an SMTP submission, a sandbox copy), parsed with the stdlib ``email``
  package but changed in place, so every byte that does not mention the address stays as it was:

  - address header fields (To, Cc, Reply-To, Sender, Resent-*, Mail-Followup-To,
    Disposition-Notification-To…): the person's mailbox is removed, the field written again (folded,
    RFC 2047 for non-ASCII names, or UTF-8 when the field was); a To left empty becomes
    ``undisclosed-recipients:;``, any other empty field goes. **From is never changed** (it is the
    sender, on the operator's own domains, and what DKIM signs for);
  - any other header field (Subject, Received, List-*, X-*…): the address is replaced where it is
    written literally, and, in unstructured fields, also inside RFC 2047 encoded words;
  - every ``text/*`` part, attachments included, at any depth of ``multipart/*`` and
    ``message/rfc822``: decoded (base64, quoted-printable, 7bit/8bit) in its charset, the address
    replaced, encoded again the same way;
  - the address is recognised case-insensitively, with its domain as Unicode or A-labels, with ``@``
    written as ``@``, ``%40`` (URLs), ``&#64;``/``&#x40;`` (HTML), also after punctuation that glues
    it to something else (``unsub+ana@…``, ``receipt-ana@…``), but not as the tail of a longer word
    (``joana@`` is not ``ana@``).

  Not covered: non-text parts (PDF, images, office documents, archives), text in a charset Python does
  not know (searched as bytes, so found only where it is ASCII-compatible), other obfuscations (HTML
  entities for other characters, the address split over lines or across markup).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import email
import email.errors
import email.message
import email.policy
import re
from collections.abc import Callable, Collection
from email import quoprimime
from email.headerregistry import Address, AddressHeader, Group, HeaderRegistry, UnstructuredHeader
from typing import Any

import idna

from mailstack.compose import domain_to_ascii
from mailstack.storage import normalize_address

__all__ = ["ERASED_ADDRESS", "AddressPattern", "redact_json", "redact_message", "redact_spec"]

# What the address becomes where it cannot simply be dropped: a valid address in every syntax it may
# stand in (header, mailto: link, URL, text) that can never be delivered (.invalid, RFC 2606).
ERASED_ADDRESS = "erased@invalid"
_ERASED_LOCAL, _ERASED_DOMAIN = ERASED_ADDRESS.split("@")

CRLF = b"\r\n"
_MAX_DEPTH = 32  # MIME nesting followed; deeper parts only get the literal replacement

# Address fields the person is removed from. Fields holding exactly one mailbox (Sender, Resent-From,
# Resent-Sender) are dropped when it is theirs; From is left alone (see the module docstring).
_ADDRESS_FIELDS = frozenset(
    {
        "to",
        "cc",
        "bcc",
        "reply-to",
        "sender",
        "resent-to",
        "resent-cc",
        "resent-bcc",
        "resent-from",
        "resent-sender",
        "mail-followup-to",
        "mail-reply-to",
        "disposition-notification-to",
        "return-receipt-to",
        "errors-to",
        "delivered-to",
        "x-original-to",
        "envelope-to",
        "x-envelope-to",
    }
)
_REGISTRY = HeaderRegistry()
for _name in _ADDRESS_FIELDS - set(_REGISTRY.registry):
    # AddressHeader is the stdlib's mixin for address fields (typeshed does not see it as a header class).
    _REGISTRY.map_to_type(_name, AddressHeader)  # type: ignore[arg-type]
_SMTP = email.policy.SMTP.clone(header_factory=_REGISTRY)
_SMTPUTF8 = email.policy.SMTPUTF8.clone(header_factory=_REGISTRY)
_IDENTITY_ENCODINGS = frozenset({"", "7bit", "8bit", "binary"})


class AddressPattern:
    """Finds one address in text and bytes (see the module docstring for the spellings recognised)."""

    def __init__(self, address: str) -> None:
        self.address = normalize_address(address)
        local, _at, domain = self.address.rpartition("@")
        domains = {domain}
        with contextlib.suppress(ValueError):
            domains.add(domain_to_ascii(domain).lower())
        if "xn--" in domain:
            with contextlib.suppress(idna.IDNAError, UnicodeError):
                domains.add(idna.decode(domain).lower())
        self.forms = frozenset(f"{local}@{d}" for d in domains)
        separators = r"(?P<at>@|%40|&\#64;|&\#x40;)"
        body = rf"{re.escape(local)}{separators}(?:{'|'.join(re.escape(d) for d in sorted(domains))})"
        # Not the tail of a longer word (joana@ is not ana@), but after any punctuation: a tagged or
        # prefixed form (unsub+ana@…, receipt-ana@…) still names the person. No domain character after.
        self._text = re.compile(rf"(?<![^\W_]){body}(?![\w-]|\.[\w-])", re.IGNORECASE)
        self._bytes = re.compile(
            rf"(?<![A-Za-z0-9\x80-\xff]){body}(?![\w\x80-\xff-]|\.[\w\x80-\xff-])".encode(),
            re.IGNORECASE,
        )

    def is_address(self, value: object) -> bool:
        """Whether ``value`` is the address itself (any case, either form of its domain)."""
        return isinstance(value, str) and normalize_address(value) in self.forms

    def search(self, text: str) -> bool:
        return self._text.search(text) is not None

    def sub(self, text: str) -> str:
        """``text`` with every occurrence replaced by :data:`ERASED_ADDRESS` (``@`` spelled as found)."""
        return self._text.sub(lambda m: f"{_ERASED_LOCAL}{m.group('at')}{_ERASED_DOMAIN}", text)

    def search_bytes(self, data: bytes) -> bool:
        return self._bytes.search(data) is not None

    def sub_bytes(self, data: bytes) -> bytes:
        return self._bytes.sub(
            lambda m: _ERASED_LOCAL.encode() + m.group("at") + _ERASED_DOMAIN.encode(), data
        )


# --- JSON ------------------------------------------------------------------------------------------


def about(value: object, pattern: AddressPattern, message_ids: Collection[int] = ()) -> bool:
    """Whether a JSON object is about the person: a recipient entry or an event of theirs."""
    if not isinstance(value, dict):
        return False
    if pattern.is_address(value.get("Email")) or pattern.is_address(value.get("email")):
        return True
    message_id = value.get("MessageID")
    return isinstance(message_id, int) and message_id in message_ids


def redact_json(value: Any, pattern: AddressPattern, message_ids: Collection[int] = ()) -> Any:
    """``value`` without the objects about the person (in lists) and without the address in strings."""
    if isinstance(value, str):
        return pattern.sub(value)
    if isinstance(value, list):
        return [
            redact_json(item, pattern, message_ids) for item in value if not about(item, pattern, message_ids)
        ]
    if isinstance(value, dict):
        return {
            (pattern.sub(key) if isinstance(key, str) else key): redact_json(item, pattern, message_ids)
            for key, item in value.items()
        }
    return value


def mentions(value: Any, pattern: AddressPattern, message_ids: Collection[int] = ()) -> list[Any]:
    """The objects of ``value`` (at any depth) that are about the person, for an export."""
    if about(value, pattern, message_ids):
        return [value]
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [found for child in children for found in mentions(child, pattern, message_ids)]


def redact_spec(spec: dict[str, Any], pattern: AddressPattern) -> dict[str, Any]:
    """A stored MessageSpec (JSON) for the other recipients: the person out of the recipient lists and
    the optional single-address fields, the address out of every text, the submitted message and
    text attachments. From is kept as it is."""
    result: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "From":
            result[key] = value
        elif key in ("ReplyTo", "Sender", "TemplateErrorReporting") and about(value, pattern):
            result[key] = None
        elif key == "Raw" and isinstance(value, str):
            raw = base64.b64decode(value)
            redacted = redact_message(raw, pattern)
            result[key] = value if redacted == raw else base64.b64encode(redacted).decode("ascii")
        elif key in ("Attachments", "InlinedAttachments") and isinstance(value, list):
            result[key] = [_attachment(item, pattern) for item in value]
        else:
            result[key] = redact_json(value, pattern)
    return result


def _attachment(item: Any, pattern: AddressPattern) -> Any:
    if not isinstance(item, dict):
        return redact_json(item, pattern)
    result = {key: redact_json(value, pattern) for key, value in item.items() if key != "Base64Content"}
    content = item.get("Base64Content")
    if "Base64Content" in item:
        result["Base64Content"] = content
    content_type = str(item.get("ContentType", "")).strip().lower()
    if isinstance(content, str) and content_type.startswith("text/"):
        message = email.message.Message()
        message["Content-Type"] = content_type
        try:
            data = base64.b64decode(content)
        except (binascii.Error, ValueError):
            return result
        redacted = _recode(data, message.get_content_charset() or "utf-8", pattern)
        if redacted is not None:
            result["Base64Content"] = base64.b64encode(redacted).decode("ascii")
    return result


# --- MIME ------------------------------------------------------------------------------------------


def redact_message(data: bytes, pattern: AddressPattern) -> bytes:
    """A MIME message (CRLF line endings) without the address; unchanged bytes when it does not
    mention it. Messages that are not CRLF throughout only get the literal replacement."""
    if data.count(b"\r") != data.count(CRLF) or data.count(b"\n") != data.count(CRLF):
        return pattern.sub_bytes(data)
    return _entity(data, pattern, 0)


def _entity(data: bytes, pattern: AddressPattern, depth: int) -> bytes:
    """One entity (a message or a body part): header fields, then the body by its content type."""
    if depth > _MAX_DEPTH:
        return pattern.sub_bytes(data)
    if data.startswith(CRLF):  # a body part without header fields
        head, body = b"", data[2:]
    else:
        end = data.find(b"\r\n\r\n")
        if end < 0:  # header fields only
            return _head(data, pattern)
        head, body = data[: end + 2], data[end + 4 :]
    header = email.message_from_bytes(head + CRLF, policy=email.policy.compat32)
    return _head(head, pattern) + CRLF + _body(header, body, pattern, depth)


_FIELD_END = re.compile(rb"\r\n(?![ \t])")  # a line break that does not continue a folded field


def _head(head: bytes, pattern: AddressPattern) -> bytes:
    """Header fields, each (with its folded lines) redacted on its own; the others byte for byte."""
    if not head:
        return head
    terminated = head.endswith(CRLF)
    kept = []
    for field in _FIELD_END.split(head[:-2] if terminated else head):
        redacted = _field(field + CRLF, pattern)
        if redacted is not None:
            kept.append(redacted.removesuffix(CRLF))
    if not kept:
        return b""
    return CRLF.join(kept) + (CRLF if terminated else b"")


def _field(raw: bytes, pattern: AddressPattern) -> bytes | None:
    """One header field (CRLF-terminated) without the address; None when nothing is left of it."""
    text = raw.decode("utf-8", "surrogateescape")
    name, colon, rest = text.partition(":")
    if not colon:
        return pattern.sub_bytes(raw)
    key = name.strip().lower()
    value = rest.replace("\r\n", "").strip(" \t")
    if key == "from":
        return raw
    if key in _ADDRESS_FIELDS:
        return _address_field(raw, name.strip(), key, value, pattern)
    if pattern.search(text):
        raw = pattern.sub(text).encode("utf-8", "surrogateescape")
        value = pattern.sub(value)
    if "=?" in value and issubclass(_REGISTRY[key], UnstructuredHeader):
        # Encoded words (RFC 2047) of free text: decoded, searched, written again if they mention it.
        decoded = _parse(key, value)
        if decoded is not None and pattern.search(str(decoded)):
            return _render(name.strip(), pattern.sub(str(decoded)), utf8=not raw.isascii())
    return raw


def _parse(key: str, value: str) -> Any:
    """The stdlib's parsed header, or None when its parser gives up on the value."""
    try:
        return _REGISTRY(key, value)
    except (email.errors.MessageError, ValueError, IndexError, TypeError):
        return None


def _address_field(raw: bytes, name: str, key: str, value: str, pattern: AddressPattern) -> bytes | None:
    parsed = _parse(key, value)
    if not isinstance(parsed, AddressHeader):  # unparsable: what is literally there
        return pattern.sub_bytes(raw)
    if not pattern.search_bytes(raw) and not pattern.search(str(parsed)):
        return raw
    groups: list[Group] = []
    for group in parsed.groups:
        kept = tuple(
            Address(_scrub_name(a.display_name, pattern), a.username, a.domain)
            for a in group.addresses
            if not pattern.is_address(f"{a.username}@{a.domain}")
        )
        if group.display_name is not None:
            groups.append(Group(_scrub_name(group.display_name, pattern), kept))
        elif kept:
            groups.append(Group(None, kept))
    if not any(group.addresses for group in groups) and not any(g.display_name for g in groups):
        if key != "to":
            return None
        groups = [Group("undisclosed-recipients", ())]
    utf8 = not raw.isascii() or any(not a.addr_spec.isascii() for g in groups for a in g.addresses)
    return _render(name, groups, utf8=utf8)


def _scrub_name(name: str, pattern: AddressPattern) -> str:
    return pattern.sub(name) if name else name


def _render(name: str, value: Any, *, utf8: bool) -> bytes:
    policy = _SMTPUTF8 if utf8 else _SMTP
    folded: str = policy.header_factory(name, value).fold(policy=policy)
    return folded.encode("utf-8")


def _body(header: email.message.Message, body: bytes, pattern: AddressPattern, depth: int) -> bytes:
    content_type = header.get_content_type()
    encoding = str(header.get("content-transfer-encoding", "")).strip().lower()
    if content_type.startswith("multipart/"):
        boundary = header.get_boundary()
        return pattern.sub_bytes(body) if not boundary else _multipart(body, boundary, pattern, depth)
    if content_type in ("message/rfc822", "message/global") and encoding in _IDENTITY_ENCODINGS:
        return _entity(body, pattern, depth + 1)
    if not content_type.startswith("text/"):
        return body  # attachments other than text are not searched (see the module docstring)
    return _text(body, encoding, header.get_content_charset() or "us-ascii", pattern)


def _multipart(body: bytes, boundary: str, pattern: AddressPattern, depth: int) -> bytes:
    """Each part redacted on its own; preamble, delimiter lines and epilogue kept byte for byte."""
    delimiter = re.compile(
        rb"(?:^|\r\n)--" + re.escape(boundary.encode("utf-8", "surrogateescape")) + rb"(--)?[ \t]*(?=\r\n|$)"
    )
    matches = list(delimiter.finditer(body))
    if not matches:
        return pattern.sub_bytes(body)
    out = [body[: matches[0].start()]]
    for index, match in enumerate(matches):
        out.append(match.group())
        if match.group(1):  # the close delimiter: the rest is the epilogue
            out.append(body[match.end() :])
            break
        end = matches[index + 1].start() if index + 1 < len(matches) else len(body)
        part = body[match.end() : end]
        if part.startswith(CRLF):
            out.append(CRLF)
            part = part[2:]
        out.append(_entity(part, pattern, depth + 1) if part else part)
    return b"".join(out)


def _text(body: bytes, encoding: str, charset: str, pattern: AddressPattern) -> bytes:
    """A text part's body with the address replaced, in its own transfer encoding and charset."""
    if encoding == "base64":
        try:
            decoded = binascii.a2b_base64(body)
        except binascii.Error:
            return body
        encode: Callable[[bytes], bytes] = _base64_lines
    elif encoding == "quoted-printable":
        decoded = binascii.a2b_qp(body)
        encode = _quoted_printable
    elif encoding in _IDENTITY_ENCODINGS:
        decoded, encode = body, bytes
    else:  # an encoding this code does not know (x-uuencode…): what is literally there
        return pattern.sub_bytes(body)
    redacted = _recode(decoded, charset, pattern)
    if redacted is None:
        return body
    encoded = encode(redacted)
    if encode is not bytes and not body.endswith(CRLF):
        encoded = encoded.removesuffix(CRLF)
    return encoded


def _recode(data: bytes, charset: str, pattern: AddressPattern) -> bytes | None:
    """``data`` in ``charset`` with the address replaced; None when it does not mention it."""
    try:
        codec = codecs.lookup(charset).name
        text = data.decode(codec, "surrogateescape")
        if not pattern.search(text):
            return None
        return pattern.sub(text).encode(codec, "surrogateescape")
    except (LookupError, UnicodeError):
        # A charset Python does not know (or cannot round-trip): the ASCII-compatible bytes only.
        return pattern.sub_bytes(data) if pattern.search_bytes(data) else None


def _base64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _quoted_printable(data: bytes) -> bytes:
    encoded: str = quoprimime.body_encode(data.decode("latin-1"), maxlinelen=76, eol="\r\n")
    return encoded.encode("ascii")
