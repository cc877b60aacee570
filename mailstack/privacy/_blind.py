"""Blind indexes: keyed hashes that let mailstack find an address without storing it."""

from __future__ import annotations

import hashlib
import hmac

from mailstack.keyring import Keyring
from mailstack.storage import normalize_address

__all__ = ["address_index"]

_PURPOSE = "blind-index:address"


def address_index(keyring: Keyring, address: str) -> str:
    """The blind index of ``address``: HMAC-SHA256 under a key derived from the master secret.

    Addresses are normalised first (trimmed, without <>, lower-case) so every spelling of one mailbox
    gets one index; without the master secret the index cannot be recomputed from a guessed address.
    """
    key = keyring.derive(_PURPOSE)
    return hmac.new(key, normalize_address(address).encode(), hashlib.sha256).hexdigest()
