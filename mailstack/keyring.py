"""The master secret and what is derived from it: HMAC keys per purpose and at-rest encryption.

One 256-bit master secret (``DIR/secret.key`` or ``MAILSTACK_SECRET_KEY``) roots every key mailstack
holds; each purpose gets its own HKDF-derived key so that a token for one use never serves another.
"""

from __future__ import annotations

import os
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["DecryptionError", "Keyring"]

_NONCE_BYTES = 12
_FORMAT_V1 = b"\x01"


class DecryptionError(Exception):
    """Ciphertext that was altered, or encrypted under another master secret or purpose."""


class Keyring:
    """Derives per-purpose keys from the master secret and encrypts small secrets at rest (AES-256-GCM)."""

    def __init__(self, master_secret: bytes) -> None:
        if len(master_secret) < 32:
            raise ValueError("the master secret must be at least 32 bytes")
        self._master = master_secret

    @cache  # noqa: B019 - a keyring lives as long as the process and has few purposes
    def derive(self, purpose: str, length: int = 32) -> bytes:
        """A key for ``purpose``; the same master secret and purpose always give the same key."""
        return HKDF(hashes.SHA256(), length, salt=None, info=b"mailstack:" + purpose.encode()).derive(
            self._master
        )

    def encrypt(self, purpose: str, plaintext: bytes) -> bytes:
        """Encrypt with a fresh nonce; the purpose is bound in as associated data."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.derive("encrypt:" + purpose)).encrypt(nonce, plaintext, purpose.encode())
        return _FORMAT_V1 + nonce + sealed

    def decrypt(self, purpose: str, blob: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; raises :class:`DecryptionError` on any mismatch."""
        if not blob.startswith(_FORMAT_V1) or len(blob) < 1 + _NONCE_BYTES + 16:
            raise DecryptionError("unknown ciphertext format")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return AESGCM(self.derive("encrypt:" + purpose)).decrypt(nonce, sealed, purpose.encode())
        except InvalidTag:
            raise DecryptionError(f"cannot decrypt {purpose}: wrong master secret or altered data") from None
