"""API keys: who may call mailstack, and with which scopes. Only a hash of each secret is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ._schema import api_keys

__all__ = [
    "API_SCOPES",
    "DEFAULT_API_SCOPES",
    "ApiKeyRecord",
    "ApiKeys",
    "api_key_record",
    "create_api_key",
    "find_api_key",
    "hash_secret",
    "parse_scopes",
    "secret_matches",
    "set_api_key_scopes",
]

# What an API key may do. Every route names the one scope it needs (mailstack.api._auth):
#   send          POST /v3.1/send, SMTP submission, automations, conversions
#   read          messages, message history, the sandbox outbox, statistics
#   webhooks      event callback URLs (they push every event, addresses included, elsewhere)
#   suppressions  /api/v1/suppressions
#   consents      /api/v1/consents (double opt-in)
#   privacy       /api/v1/privacy: export and erase any data subject, read the audit trail (admin only)
API_SCOPES = ("send", "read", "webhooks", "suppressions", "consents", "privacy")
# New keys, and keys made before scopes existed, get everything except the admin scope.
DEFAULT_API_SCOPES = frozenset(API_SCOPES) - {"privacy"}


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """Scopes from ``"send,read"`` or an iterable; ``"*"`` means every scope. Raises ValueError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = {item.strip().lower() for item in items if item.strip()}
    if "*" in names:
        return frozenset(API_SCOPES)
    unknown = names - set(API_SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {', '.join(sorted(unknown))} (known: {', '.join(API_SCOPES)})")
    if not names:
        raise ValueError(f"give at least one scope (known: {', '.join(API_SCOPES)})")
    return frozenset(names)


def _scopes_text(scopes: Iterable[str]) -> str:
    return ",".join(scope for scope in API_SCOPES if scope in set(scopes))


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: int
    public_key: str
    name: str
    secret_hash: str
    disabled: bool
    scopes: frozenset[str] = DEFAULT_API_SCOPES

    def allows(self, scope: str) -> bool:
        """Whether this key holds ``scope``."""
        return scope in self.scopes


def hash_secret(secret: str) -> str:
    # API secrets are 256-bit random values, so a fast hash is enough (brute force is hopeless) and keeps
    # per-request authentication cheap; passwords chosen by people get argon2 elsewhere.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    conn: Connection, name: str = "default", scopes: Iterable[str] = DEFAULT_API_SCOPES
) -> tuple[str, str]:
    """Create an API key; returns ``(public_key, secret)``. Only the secret's hash is stored."""
    granted = parse_scopes(scopes)
    public_key = secrets.token_hex(16)
    secret = secrets.token_hex(32)
    conn.execute(
        insert(api_keys).values(
            public_key=public_key,
            secret_hash=hash_secret(secret),
            name=name,
            created_at=time.time(),
            scopes=_scopes_text(granted),
        )
    )
    return public_key, secret


def api_key_record(row: Any) -> ApiKeyRecord:
    """An :class:`ApiKeyRecord` from a row of ``api_keys``."""
    return ApiKeyRecord(
        row.id, row.public_key, row.name, row.secret_hash, row.disabled, parse_scopes(row.scopes)
    )


def find_api_key(conn: Connection, public_key: str) -> ApiKeyRecord | None:
    row = conn.execute(select(api_keys).where(api_keys.c.public_key == public_key)).first()
    return None if row is None else api_key_record(row)


def set_api_key_scopes(conn: Connection, public_key: str, scopes: Iterable[str]) -> bool:
    """Replace a key's scopes; False when there is no such key. Raises ValueError for unknown scopes."""
    granted = parse_scopes(scopes)
    changed = conn.execute(
        update(api_keys).where(api_keys.c.public_key == public_key).values(scopes=_scopes_text(granted))
    ).rowcount
    return bool(changed)


def secret_matches(record: ApiKeyRecord, secret: str) -> bool:
    return hmac.compare_digest(record.secret_hash, hash_secret(secret))


class ApiKeys:
    """The API keys aggregate (see :class:`~mailstack.storage.Store`)."""

    def create(
        self, conn: Connection, name: str = "default", scopes: Iterable[str] = DEFAULT_API_SCOPES
    ) -> tuple[str, str]:
        """See :func:`create_api_key`."""
        return create_api_key(conn, name, scopes)

    def find(self, conn: Connection, public_key: str) -> ApiKeyRecord | None:
        """See :func:`find_api_key`."""
        return find_api_key(conn, public_key)

    def set_scopes(self, conn: Connection, public_key: str, scopes: Iterable[str]) -> bool:
        """See :func:`set_api_key_scopes`."""
        return set_api_key_scopes(conn, public_key, scopes)
