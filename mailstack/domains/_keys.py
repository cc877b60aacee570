"""DKIM keys at rest: generated here, stored encrypted in the database, loaded once into a signer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Connection

from mailstack.keyring import Keyring
from mailstack.signing import Algorithm, DkimKey, generate_key, load_key
from mailstack.storage import add_dkim_key, list_dkim_keys

ALGORITHMS: tuple[Algorithm, ...] = ("rsa-sha256", "ed25519-sha256")
_SUFFIX = {"rsa-sha256": "r", "ed25519-sha256": "e"}
_PURPOSE = "dkim-private-key"
RSA_BITS = 2048  # what generate_key makes and what an imported key should have


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """What DNS must hold for one selector."""

    domain: str
    selector: str
    algorithm: str
    dns_name: str
    txt: str
    activates_at: float

    def to_json(self) -> dict[str, str]:
        return {
            "selector": self.selector,
            "algorithm": self.algorithm,
            "dns_name": self.dns_name,
            "txt": self.txt,
        }


def _published(key: DkimKey, activates_at: float) -> PublishedKey:
    return PublishedKey(key.domain, key.selector, key.algorithm, key.dns_name(), key.dns_txt(), activates_at)


def create_domain_keys(
    conn: Connection, keyring: Keyring, domain: str, *, activates_at: float | None = None
) -> list[PublishedKey]:
    """Generate one RSA-2048 and one Ed25519 key under fresh selectors (``ms<YYYYMM><r|e>[n]``)."""
    domain = domain.lower().rstrip(".")
    taken = {row.selector for row in list_dkim_keys(conn, domain=domain, active_only=False)}
    stamp = datetime.now(UTC).strftime("%Y%m")
    when = time.time() if activates_at is None else activates_at
    created = []
    for algorithm in ALGORITHMS:
        selector = f"ms{stamp}{_SUFFIX[algorithm]}"
        counter = 1
        while selector in taken:
            counter += 1
            selector = f"ms{stamp}{_SUFFIX[algorithm]}{counter}"
        key = generate_key(domain, selector, algorithm)
        add_dkim_key(
            conn, domain, selector, algorithm, keyring.encrypt(_PURPOSE, key.private_pem()), activates_at=when
        )
        created.append(_published(key, when))
    return created


class DuplicateSelectorError(ValueError):
    """The selector already holds a different key: importing would silently change what DNS publishes."""


@dataclass(frozen=True, slots=True)
class ImportedKey:
    """The outcome of :func:`import_domain_key`: the key's DNS record and whether it was stored now."""

    published: PublishedKey
    created: bool  # False: the same key was already stored under this selector (nothing changed)
    warning: str | None = None  # usable but weaker than recommended (RSA below 2048 bits)


def _public_der(key: DkimKey) -> bytes:
    return key.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def import_domain_key(
    conn: Connection,
    keyring: Keyring,
    domain: str,
    selector: str,
    algorithm: Algorithm,
    pem: bytes,
    *,
    activates_at: float | None = None,
) -> ImportedKey:
    """Store a provided private key (PKCS#8 or PKCS#1 PEM) like a generated one: encrypted at rest.

    Raises ValueError when the PEM does not parse, its type does not match ``algorithm`` or an RSA key is
    below 1024 bits, and :class:`DuplicateSelectorError` when the selector holds another key. Importing the
    key a selector already holds (same algorithm, same public key) changes nothing.
    """
    key = load_key(domain.lower().rstrip("."), selector, algorithm, pem)
    warning = None
    if isinstance(key.private_key, rsa.RSAPrivateKey) and key.private_key.key_size < RSA_BITS:
        warning = (
            f"RSA key of {key.private_key.key_size} bits: accepted (RFC 8301's minimum is 1024), "
            f"but {RSA_BITS} bits are recommended"
        )
    existing = _stored_key(conn, keyring, key.domain, selector)
    if existing is not None:
        stored, stored_at = existing
        if stored.algorithm != key.algorithm or _public_der(stored) != _public_der(key):
            raise DuplicateSelectorError(
                f"selector {selector!r} of {key.domain} already holds another {stored.algorithm} key; "
                "choose a new selector (rotation keeps the old one published)"
            )
        return ImportedKey(_published(stored, stored_at), created=False, warning=warning)
    when = time.time() if activates_at is None else activates_at
    # Stored as PKCS#8 whatever the input format, exactly as generate_key's keys are.
    add_dkim_key(
        conn, key.domain, selector, algorithm, keyring.encrypt(_PURPOSE, key.private_pem()), activates_at=when
    )
    return ImportedKey(_published(key, when), created=True, warning=warning)


def _stored_key(
    conn: Connection, keyring: Keyring, domain: str, selector: str
) -> tuple[DkimKey, float] | None:
    for row in list_dkim_keys(conn, domain=domain, active_only=False):
        if row.selector == selector:
            return _decrypt(
                keyring, row.domain, row.selector, row.algorithm, row.encrypted_pem
            ), row.activates_at
    return None


def _decrypt(keyring: Keyring, domain: str, selector: str, algorithm: str, blob: bytes) -> DkimKey:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"DKIM key {selector}._domainkey.{domain}: unknown algorithm {algorithm!r}")
    return load_key(domain, selector, algorithm, keyring.decrypt(_PURPOSE, blob))


def signing_keys(conn: Connection, keyring: Keyring, *, now: float) -> list[DkimKey]:
    """Per domain and algorithm, the newest key already active: what new mail is signed with."""
    chosen: dict[tuple[str, str], tuple[float, DkimKey]] = {}
    for row in list_dkim_keys(conn):
        if row.activates_at > now:
            continue
        current = chosen.get((row.domain, row.algorithm))
        if current is None or row.activates_at >= current[0]:
            key = _decrypt(keyring, row.domain, row.selector, row.algorithm, row.encrypted_pem)
            chosen[(row.domain, row.algorithm)] = (row.activates_at, key)
    return [key for _when, key in chosen.values()]


def published_keys(conn: Connection, keyring: Keyring, *, domain: str | None = None) -> list[PublishedKey]:
    """Every active key's DNS record: old selectors stay published so mail in flight still verifies."""
    return [
        _published(
            _decrypt(keyring, row.domain, row.selector, row.algorithm, row.encrypted_pem), row.activates_at
        )
        for row in list_dkim_keys(conn, domain=domain)
    ]
