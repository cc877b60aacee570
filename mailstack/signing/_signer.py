"""DKIM-Signature generation (RFC 6376 with rsa-sha256, RFC 8463 with ed25519-sha256), relaxed/relaxed."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailstack.signing._canon import parse_headers, relaxed_body, relaxed_headers, split_message
from mailstack.signing._keys import DkimKey

DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "feedback-id",
)

# RFC 5322 ftext: printable US-ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# Fold before 78 columns (RFC 5322 §2.1.1 SHOULD).
_MAX_LINE = 78
_FOLD = "\r\n "
_HEADER_START = "DKIM-Signature:"

# Stateless and immutable: build them once rather than per signature.
_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()

# Tokens of a From header value: quoted-pairs, the quote/comment delimiters, and runs of anything else.
_ADDR_TOKEN = re.compile(r'\\.|["()]|[^\\"()]+', re.DOTALL)
_ANGLE_ADDR = re.compile(r"<([^<>]*)>")
# A comma separates mailboxes unless it sits inside an angle-addr (obsolete source routes).
_MAILBOX_SEP = re.compile(r",(?![^<>]*>)")
_DOMAIN = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*")


class SigningError(Exception):
    """The message cannot be signed: no From domain, or no key for the signing domain."""


def _strip_quotes_and_comments(text: str) -> str:
    """Drop quoted strings and (nested) comments, which may contain '@', '<' or ',' of their own."""
    out: list[str] = []
    depth = 0
    in_quote = False
    for part in _ADDR_TOKEN.findall(text):
        if in_quote:
            if part == '"':
                in_quote = False
        elif depth:
            if part == "(":
                depth += 1
            elif part == ")":
                depth -= 1
        elif part == '"':
            in_quote = True
            # A placeholder keeps a quoted local part ("john doe"@example.com) non-empty.
            out.append('"q"')
        elif part == "(":
            depth = 1
            out.append(" ")
        elif part == ")":
            raise SigningError("From header has an unbalanced ')'")
        else:
            out.append(part)
    if in_quote or depth:
        raise SigningError("From header has an unterminated quoted string or comment")
    return "".join(out)


def _a_label(domain: str) -> str:
    """Lower-case ``domain`` without trailing dot, U-labels converted to their xn-- form."""
    domain = domain.rstrip(".").lower()
    if not domain.isascii():
        # SMTPUTF8 mail may carry a U-label domain; keys are configured with the A-label (xn--) form.
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise SigningError(f"domain {domain!r} is not a valid IDN") from exc
    return domain


def header_from_domain(value: bytes) -> str:
    """Return the lower-case domain of the single mailbox of a raw From header value.

    Display names, quoted strings and comments are ignored, so an '@' inside them (or inside an
    RFC 2047 encoded word, which only ever appears in a display name) cannot select the domain.
    """
    text = value.decode("utf-8", "replace").replace("\r\n", "")
    cleaned = _strip_quotes_and_comments(text)
    mailboxes = [m for m in _MAILBOX_SEP.split(cleaned) if m.strip()]
    if len(mailboxes) != 1:
        raise SigningError(f"From header has {len(mailboxes)} mailboxes; pass the signing domain explicitly")
    angles = _ANGLE_ADDR.findall(mailboxes[0])
    if len(angles) > 1:
        raise SigningError(f"From header has several <addresses>: {text.strip()!r}")
    addr = angles[0] if angles else mailboxes[0]
    addr = addr.rpartition(":")[2]  # obsolete source route "@relay:user@domain"
    local, at, domain = addr.rpartition("@")
    domain = "".join(domain.split())
    if not at or not local.strip() or not domain:
        raise SigningError(f"From header has no usable address: {text.strip()!r}")
    domain = _a_label(domain)
    if not _DOMAIN.fullmatch(domain):
        raise SigningError(f"From header has no usable address: {text.strip()!r}")
    return domain


@dataclass(frozen=True, slots=True)
class _Layout:
    """A folded DKIM-Signature header up to "b=", with placeholders for the per-message values."""

    header: str
    canonical: str  # its relaxed canonical form, as covered by the signature
    column: int  # where the b= value starts on the last line


# Placeholders for t=, x= and bh=: control characters never occur in the rest of the header.
_T, _X, _BH = "\x00", "\x01", "\x02"
_BH_LEN = 44  # base64 of a SHA-256 digest
_MAX_LAYOUTS = 512


@dataclass(frozen=True, slots=True, eq=False)
class _PreparedKey:
    key: DkimKey
    sign: Callable[[bytes], bytes]
    # "v=1;", "a=...;", "c=...;", "d=...;", "s=...;" — constant per key, so built once.
    head_tokens: tuple[str, ...]
    # Folding depends only on the lengths of t=/x=/bh= (fixed in practice) and on the h= list, which
    # repeats from message to message; caching the layout keeps folding off the per-message path.
    layouts: dict[tuple[tuple[str, ...], int, int], _Layout] = field(default_factory=dict)

    def layout(self, h_names: tuple[str, ...], t_len: int, x_len: int) -> _Layout:
        cache_key = (h_names, t_len, x_len)
        layout = self.layouts.get(cache_key)
        if layout is None:
            if len(self.layouts) >= _MAX_LAYOUTS:
                self.layouts.clear()
            layout = _build_layout(self.head_tokens, h_names, t_len, x_len)
            self.layouts[cache_key] = layout
        return layout


def _build_layout(head_tokens: Iterable[str], h_names: tuple[str, ...], t_len: int, x_len: int) -> _Layout:
    tokens = [(" ", token) for token in head_tokens]
    tokens.append((" ", f"t={_T * t_len};"))
    if x_len:
        tokens.append((" ", f"x={_X * x_len};"))
    tokens.append((" ", f"h={h_names[0]}"))
    tokens.extend(("", f":{name}") for name in h_names[1:])
    tokens[-1] = (tokens[-1][0], tokens[-1][1] + ";")
    tokens.append((" ", f"bh={_BH * _BH_LEN};"))
    tokens.append((" ", "b="))
    pieces, column = _fold(tokens)
    header = "".join(pieces)
    # Relaxed form of our own output: it has no tabs or repeated spaces, so unfolding is all it takes.
    canonical = "dkim-signature:" + header[len(_HEADER_START) :].replace(_FOLD, " ").strip(" ")
    return _Layout(header, canonical, column)


def _signing_function(key: DkimKey) -> Callable[[bytes], bytes]:
    private_key = key.private_key
    if isinstance(private_key, rsa.RSAPrivateKey):

        def sign_rsa(data: bytes) -> bytes:
            return private_key.sign(data, _PKCS1, _SHA256)

        return sign_rsa
    assert isinstance(private_key, ed25519.Ed25519PrivateKey)  # DkimKey checked the type

    def sign_ed25519(data: bytes) -> bytes:
        # RFC 8463 §3: PureEdDSA over the SHA-256 digest of the canonicalized data, not over the data.
        return private_key.sign(hashlib.sha256(data).digest())

    return sign_ed25519


def _fold(tokens: Iterable[tuple[str, str]]) -> tuple[list[str], int]:
    """Lay out ``(separator, token)`` pairs after the header name, folding where a line would overflow.

    Returns the pieces and the column after the last one. Folding always happens at places where
    RFC 6376 allows FWS: between tags and around the ':' of the h= list.
    """
    pieces = [_HEADER_START]
    column = len(_HEADER_START)
    for sep, token in tokens:
        if column + len(sep) + len(token) > _MAX_LINE:
            pieces.append(_FOLD)
            pieces.append(token)
            column = 1 + len(token)
        else:
            pieces.append(sep)
            pieces.append(token)
            column += len(sep) + len(token)
    return pieces, column


def _fold_base64(value: str, column: int) -> str:
    """Fold a base64 value that starts at ``column`` (base64 strings may contain FWS anywhere)."""
    first = max(_MAX_LINE - column, 0)
    chunks = [value[:first]]
    width = _MAX_LINE - 1
    chunks.extend(value[i : i + width] for i in range(first, len(value), width))
    return _FOLD.join(chunks)


class Signer:
    """Sign messages with DKIM, relaxed/relaxed, one signature per key of the signing domain.

    ``signed_headers`` are the header names to sign when present (``from`` is mandatory);
    ``oversigned`` names are listed in h= once more than they occur, so that adding one more such
    header after signing breaks the signature (RFC 6376 §8.15); they are signed even if absent from
    ``signed_headers``. ``expire_after`` (seconds) adds an x= tag; by default there is none.
    """

    def __init__(
        self,
        keys: Iterable[DkimKey],
        signed_headers: Iterable[str] = DEFAULT_SIGNED_HEADERS,
        oversigned: Iterable[str] = ("from",),
        *,
        expire_after: int | None = None,
    ) -> None:
        signed = self._header_names("signed_headers", signed_headers)
        over = self._header_names("oversigned", oversigned)
        if "from" not in signed:
            # RFC 6376 §5.4: the From header field MUST be signed.
            raise ValueError("signed_headers must include 'from'")
        signed += tuple(name for name in over if name not in signed)
        if expire_after is not None and expire_after <= 0:
            raise ValueError(f"expire_after must be a positive number of seconds, got {expire_after}")
        # (name as bytes for matching parsed fields, name for h=, oversigned?)
        self._signed: tuple[tuple[bytes, str, bool], ...] = tuple(
            (n.encode("ascii"), n, n in over) for n in signed
        )
        self._wanted = frozenset(n.encode("ascii") for n in signed)
        self._expire_after = expire_after
        self._keys: dict[str, list[_PreparedKey]] = {}
        for key in keys:
            domain_keys = self._keys.setdefault(key.domain, [])
            if any(k.key.selector == key.selector for k in domain_keys):
                raise ValueError(f"duplicate DKIM key for selector {key.selector!r} of {key.domain!r}")
            head = (
                "v=1;",
                f"a={key.algorithm};",
                "c=relaxed/relaxed;",
                f"d={key.domain};",
                f"s={key.selector};",
            )
            domain_keys.append(_PreparedKey(key, _signing_function(key), head))

    @staticmethod
    def _header_names(what: str, names: Iterable[str]) -> tuple[str, ...]:
        if isinstance(names, str | bytes):
            raise TypeError(f"{what} must be an iterable of header names, not a single string")
        result: list[str] = []
        for name in names:
            lowered = name.strip().lower()
            if not _FIELD_NAME.fullmatch(lowered):
                raise ValueError(f"invalid header name {name!r} in {what}")
            if lowered not in result:
                result.append(lowered)
        return tuple(result)

    @property
    def domains(self) -> frozenset[str]:
        """The domains this signer has keys for."""
        return frozenset(self._keys)

    def sign(self, message: bytes, domain: str | None = None, timestamp: int | None = None) -> bytes:
        """Return the DKIM-Signature header field(s) for ``message``, CRLF-terminated and folded.

        One signature per key of ``domain`` (default: the From header's domain). ``message`` should
        use CRLF line endings; bare LF is accepted and hashed as CRLF, the way it will be transported.
        Raises SigningError when the message has no From header or no key exists for the domain.
        """
        header_block, body = split_message(message)
        by_name: dict[bytes, list[bytes]] = {}
        wanted = self._wanted
        for field_name, value in parse_headers(header_block):
            if field_name in wanted:
                by_name.setdefault(field_name, []).append(value)
        from_values = by_name.get(b"from")
        if not from_values:
            raise SigningError("message has no From header")
        if domain is None:
            if len(from_values) > 1:
                raise SigningError(
                    f"message has {len(from_values)} From headers; pass the signing domain explicitly"
                )
            domain = header_from_domain(from_values[0])
        else:
            domain = _a_label(domain)
        keys = self._keys.get(domain)
        if not keys:
            known = ", ".join(sorted(self._keys)) or "none"
            raise SigningError(f"no DKIM key for domain {domain!r} (keys exist for: {known})")

        # Header hash input: listed headers in h= order, each name's instances taken bottom-up
        # (RFC 6376 §5.4.2). An oversigned name gets one more h= entry than it has instances; that
        # entry matches no header and contributes nothing, but a header added later would fill it.
        h_names: list[str] = []
        selected: list[tuple[bytes, bytes]] = []
        for raw_name, name, oversign in self._signed:
            values = by_name.get(raw_name)
            if values:
                selected.extend([(raw_name, value) for value in reversed(values)])
                h_names.extend([name] * len(values))
            if oversign:
                h_names.append(name)
        header_data = relaxed_headers(selected)

        # One body hash shared by every signature: all use relaxed body canonicalization and SHA-256.
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
        now = int(time.time()) if timestamp is None else timestamp
        if now < 0:
            raise ValueError(f"timestamp must not be negative, got {now}")
        t_value = str(now)
        x_value = "" if self._expire_after is None else str(now + self._expire_after)
        h_key = tuple(h_names)

        out: list[str] = []
        for prepared in keys:
            layout = prepared.layout(h_key, len(t_value), len(x_value))
            header = layout.header
            canonical = layout.canonical
            for placeholder, filled in ((_T, t_value), (_X, x_value), (_BH, body_hash)):
                if filled:
                    header = header.replace(placeholder * len(filled), filled)
                    canonical = canonical.replace(placeholder * len(filled), filled)
            # The signature covers this header itself with an empty b= value, without a final CRLF.
            signature = prepared.sign(header_data + canonical.encode("ascii"))
            out.append(header)
            out.append(_fold_base64(base64.b64encode(signature).decode("ascii"), layout.column))
            out.append("\r\n")
        return "".join(out).encode("ascii")

    def sign_message(self, message: bytes, domain: str | None = None, timestamp: int | None = None) -> bytes:
        """Return ``message`` with its DKIM-Signature header field(s) prepended (see :meth:`sign`)."""
        return self.sign(message, domain, timestamp) + message
