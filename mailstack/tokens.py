"""Signed, URL-safe tokens (unsubscribe links, VERP return paths, ...).

A token is ``<base64url(payload)>.<base64url(mac)>`` without padding, where ``mac`` is HMAC-SHA256 over a
versioned prefix, the purpose and the payload, truncated to 16 bytes. Binding the purpose into the MAC means
a token minted for one purpose never verifies for another. Tokens are authenticated, not encrypted: the
payload is readable by anyone holding the token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

__all__ = ["MAC_SIZE", "InvalidToken", "TokenSigner"]

MAC_SIZE = 16  # bytes of HMAC-SHA256 kept: 128 bits is plenty against forgery, and keeps URLs short
_MIN_SECRET = 16
_MAX_TOKEN = 4096  # refuse to even parse absurd inputs coming from URLs or bounce addresses
# Version prefix: lets a future format change never collide with MACs computed by this one.
_PREFIX = b"mailstack.token.v1\x00"
_MAC_B64_LEN = 22  # len(base64url(16 bytes)) without padding
_TOKEN_RE = re.compile(rf"([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]{{{_MAC_B64_LEN}}})")


class InvalidToken(ValueError):  # noqa: N818 - the name is part of the agreed API
    """The token is malformed, forged, or was signed for another purpose or with another secret."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _payload_text(payload: str | int) -> str:
    # bool is an int subclass; signing True as "True" is almost certainly a bug in the caller.
    if isinstance(payload, bool) or not isinstance(payload, str | int):
        raise TypeError(f"token payload must be str or int, not {type(payload).__name__}")
    return payload if isinstance(payload, str) else str(payload)


class TokenSigner:
    """Signs and verifies tokens with one secret key (at least 16 bytes)."""

    __slots__ = ("_hmac",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise TypeError("secret must be bytes")
        if len(secret) < _MIN_SECRET:
            raise ValueError(f"secret must be at least {_MIN_SECRET} bytes")
        # Keying once and copy()ing per token skips re-hashing the key pads on every call.
        self._hmac = hmac.new(bytes(secret), _PREFIX, hashlib.sha256)

    def __repr__(self) -> str:
        return "TokenSigner(<secret>)"  # never leak the key into logs or dataclass reprs

    def mac(self, purpose: str, payload: str | int) -> bytes:
        """Return the raw 16-byte MAC of ``payload`` for ``purpose`` (for custom encodings such as VERP)."""
        if not purpose or "\x00" in purpose:
            # NUL separates purpose from payload in the MAC input, so it must not occur in the purpose.
            raise ValueError("purpose must be a non-empty string without NUL")
        h = self._hmac.copy()
        h.update(purpose.encode("utf-8"))
        h.update(b"\x00")
        h.update(_payload_text(payload).encode("utf-8"))
        return h.digest()[:MAC_SIZE]

    def sign(self, purpose: str, payload: str | int) -> str:
        """Return a URL-safe token carrying ``payload``, valid only for ``purpose``."""
        text = _payload_text(payload)
        return f"{_b64encode(text.encode('utf-8'))}.{_b64encode(self.mac(purpose, text))}"

    def verify(self, purpose: str, token: str) -> str:
        """Return the payload of ``token`` (as str), or raise :class:`InvalidToken`."""
        if not isinstance(token, str) or len(token) > _MAX_TOKEN:
            raise InvalidToken("malformed token")
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise InvalidToken("malformed token")
        encoded, given_mac = match.groups()
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            payload = raw.decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise InvalidToken("malformed token") from exc
        # Only the canonical encoding is accepted, so each payload has exactly one valid token.
        if _b64encode(raw) != encoded:
            raise InvalidToken("malformed token")
        expected = _b64encode(self.mac(purpose, payload))
        if not hmac.compare_digest(expected, given_mac):
            raise InvalidToken("bad token signature")
        return payload
