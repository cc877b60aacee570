"""VERP return paths: ``b-<base36 message id>-<mac>@<bounce_domain>``.

The MAC makes bounces unforgeable: nobody without the secret can make us attribute a bounce to a message.
It is base32 (case-insensitive), because relays and mailbox providers may change the case of local parts.
"""

from __future__ import annotations

import base64
import hmac
import re

from mailstack.compose._types import ComposeSettings

__all__ = ["parse_verp", "verp_address"]

_PURPOSE = "verp"
_MAC_CHARS = 16  # 80 bits of the MAC: ample against online forgery, keeps the local part at <= 32 chars
_MAX_ID = 2**63 - 1  # BIGINT; also bounds the base36 part to 13 characters
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_LOCAL = re.compile(rf"b-([0-9a-z]{{1,13}})-([a-z2-7]{{{_MAC_CHARS}}})")


def _base36(number: int) -> str:
    if number == 0:
        return "0"
    out: list[str] = []
    while number:
        number, rem = divmod(number, 36)
        out.append(_DIGITS[rem])
    return "".join(reversed(out))


def _mac(message_id: int, settings: ComposeSettings) -> str:
    raw = settings.tokens.mac(_PURPOSE, message_id)
    return base64.b32encode(raw).decode("ascii")[:_MAC_CHARS].lower()


def verp_address(message_id: int, settings: ComposeSettings) -> str:
    """Return the signed VERP return path for ``message_id`` (0 <= message_id < 2**63)."""
    if isinstance(message_id, bool) or not isinstance(message_id, int) or not 0 <= message_id <= _MAX_ID:
        raise ValueError("message_id must be an integer in [0, 2**63)")
    return f"b-{_base36(message_id)}-{_mac(message_id, settings)}@{settings.bounce_domain}"


def parse_verp(address: str, settings: ComposeSettings) -> int | None:
    """Return the message id of a VERP address we issued, or None (foreign, forged or malformed)."""
    if not isinstance(address, str) or len(address) > 320:
        return None
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    if not at or domain.lower().rstrip(".") != settings.bounce_domain:
        return None
    match = _LOCAL.fullmatch(local.lower())
    if match is None:
        return None
    digits, mac = match.groups()
    if len(digits) > 1 and digits[0] == "0":
        return None  # only the canonical spelling is ours
    message_id = int(digits, 36)
    if message_id > _MAX_ID or not hmac.compare_digest(_mac(message_id, settings), mac):
        return None
    return message_id
