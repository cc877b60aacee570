"""Key providers: where the key-encryption keys (KEKs) of :class:`mailstack.storage.Vault` come from.

A provider hands out a fresh 256-bit KEK together with a wrapped copy that only it can unwrap; mailstack
stores the wrapped copy and asks the provider again only once per KEK version and process. The local
provider wraps under a key derived from the master secret (embedded default, owned servers); the KMS
provider lets AWS KMS generate and unwrap it, so the database alone never suffices to read anything.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailstack.config import PrivacySettings
from mailstack.keyring import DecryptionError, Keyring

__all__ = ["KeyProvider", "KmsKeyProvider", "LocalKeyProvider", "provider_from_settings"]

_KEK_BYTES = 32
_NONCE_BYTES = 12
_LOCAL_AAD = b"mailstack:kek"


class KeyProvider(Protocol):
    """Generates and unwraps key-encryption keys."""

    @property
    def name(self) -> str:
        """Short name stored with each KEK version ("local", "kms")."""
        ...

    def generate_kek(self) -> tuple[bytes, bytes, str]:
        """A new KEK: ``(plaintext, wrapped, provider_key_id)``."""
        ...

    def unwrap_kek(self, wrapped: bytes, provider_key_id: str) -> bytes:
        """The plaintext of a KEK this provider wrapped; raises DecryptionError when it cannot."""
        ...


class LocalKeyProvider:
    """KEKs wrapped with AES-256-GCM under a key derived from the master secret."""

    name = "local"

    def __init__(self, keyring: Keyring) -> None:
        self._wrap = AESGCM(keyring.derive("kek-wrap"))

    def generate_kek(self) -> tuple[bytes, bytes, str]:
        """A random KEK and its wrapped form (nonce + ciphertext)."""
        kek = os.urandom(_KEK_BYTES)
        nonce = os.urandom(_NONCE_BYTES)
        return kek, nonce + self._wrap.encrypt(nonce, kek, _LOCAL_AAD), self.name

    def unwrap_kek(self, wrapped: bytes, provider_key_id: str) -> bytes:
        """Unwrap with the master secret; a different secret gives DecryptionError."""
        try:
            return self._wrap.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _LOCAL_AAD)
        except InvalidTag:
            raise DecryptionError("cannot unwrap the key-encryption key: wrong master secret") from None


class KmsKeyProvider:
    """KEKs generated and unwrapped by AWS KMS (``GenerateDataKey`` / ``Decrypt``) under ``key_id``."""

    name = "kms"

    def __init__(self, kms_client: Any, key_id: str) -> None:
        if not key_id:
            raise ValueError("the KMS key provider needs a key id (privacy.kms_key_id)")
        self._kms = kms_client
        self._key_id = key_id

    def generate_kek(self) -> tuple[bytes, bytes, str]:
        """One ``GenerateDataKey`` call: the plaintext KEK and the KMS ciphertext blob."""
        answer = self._kms.generate_data_key(KeyId=self._key_id, KeySpec="AES_256")
        return bytes(answer["Plaintext"]), bytes(answer["CiphertextBlob"]), str(answer["KeyId"])

    def unwrap_kek(self, wrapped: bytes, provider_key_id: str) -> bytes:
        """One ``Decrypt`` call, pinned to the KMS key that wrapped it."""
        try:
            answer = self._kms.decrypt(CiphertextBlob=wrapped, KeyId=provider_key_id)
        except self._kms.exceptions.InvalidCiphertextException:
            raise DecryptionError("KMS refused to unwrap the key-encryption key") from None
        return bytes(answer["Plaintext"])


def provider_from_settings(settings: PrivacySettings, keyring: Keyring) -> KeyProvider:
    """The key provider ``[privacy]`` names."""
    if settings.key_provider == "local":
        return LocalKeyProvider(keyring)
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - only a KMS deployment needs it

    options: dict[str, Any] = {}
    if settings.kms_region:
        options["region_name"] = settings.kms_region
    if settings.kms_endpoint_url:
        options["endpoint_url"] = settings.kms_endpoint_url
    return KmsKeyProvider(boto3.client("kms", **options), settings.kms_key_id)
