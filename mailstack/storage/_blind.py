"""Blind indexes: keyed hashes that let mailstack find an address without storing it."""

from __future__ import annotations

import hashlib
import hmac

from mailstack.keyring import Keyring

__all__ = ["address_index", "normalize_address"]

_PURPOSE = "blind-index:address"


def normalize_address(email: str) -> str:
    """The form addresses are suppressed and looked up in: trimmed, without <>, lower-case.

    Local parts are case-sensitive in theory and never in practice; mailbox providers treat
    ``Ana@Example.NET`` and ``ana@example.net`` as one mailbox, so suppression does too.
    """
    address = email.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address.lower()


def address_index(keyring: Keyring, address: str) -> str:
    """The blind index of ``address``: HMAC-SHA256 under a key derived from the master secret.

    Addresses are normalised first (trimmed, without <>, lower-case) so every spelling of one mailbox
    gets one index; without the master secret the index cannot be recomputed from a guessed address.
    """
    key = keyring.derive(_PURPOSE)
    return hmac.new(key, normalize_address(address).encode(), hashlib.sha256).hexdigest()
