"""The keyring: per-purpose keys and authenticated encryption of secrets at rest."""

from __future__ import annotations

import pytest

from mailstack.keyring import DecryptionError, Keyring


def test_round_trip_and_fresh_nonces() -> None:
    keyring = Keyring(b"k" * 32)
    first, second = keyring.encrypt("dkim", b"private key"), keyring.encrypt("dkim", b"private key")
    assert first != second and b"private key" not in first
    assert keyring.decrypt("dkim", first) == keyring.decrypt("dkim", second) == b"private key"


def test_purposes_and_masters_do_not_mix() -> None:
    keyring = Keyring(b"k" * 32)
    blob = keyring.encrypt("dkim", b"secret")
    assert keyring.derive("tokens") != keyring.derive("verp")
    with pytest.raises(DecryptionError):
        keyring.decrypt("tokens", blob)
    with pytest.raises(DecryptionError):
        Keyring(b"j" * 32).decrypt("dkim", blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        keyring.decrypt("dkim", tampered)
    with pytest.raises(DecryptionError):
        keyring.decrypt("dkim", b"garbage")


def test_short_master_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring(b"short")
