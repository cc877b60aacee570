"""Webhook endpoints (Mailjet's ``eventcallbackurl``) and their delivery log."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from mailstack.keyring import Keyring
from mailstack.storage.schema import webhook_deliveries, webhook_endpoints

__all__ = [
    "DeliveryRecord",
    "EndpointRecord",
    "create_endpoint",
    "delete_endpoint",
    "endpoint_secret",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
]

SECRET_PURPOSE = "webhook-signing-secret"  # noqa: S105 - a key-derivation label, not a secret


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    id: int
    api_key_id: int
    event_type: str
    url: str
    version: int
    status: str
    is_backup: bool
    created_at: float

    def to_json(self) -> dict[str, Any]:
        """Mailjet's ``eventcallbackurl`` shape."""
        return {
            "ID": self.id,
            "APIKeyID": self.api_key_id,
            "EventType": self.event_type,
            "Url": self.url,
            "Version": self.version,
            "Status": self.status,
            "IsBackup": self.is_backup,
        }


def _endpoint(row: Any) -> EndpointRecord:
    return EndpointRecord(
        row.id,
        row.api_key_id,
        row.event_type,
        row.url,
        row.version,
        row.status,
        row.is_backup,
        row.created_at,
    )


def create_endpoint(
    conn: Connection,
    keyring: Keyring,
    *,
    api_key_id: int,
    event_type: str,
    url: str,
    version: int = 1,
    status: str = "alive",
    is_backup: bool = False,
) -> tuple[EndpointRecord, str]:
    """Store an endpoint with a fresh signing secret; returns it and the secret (hex, shown once)."""
    secret = secrets.token_bytes(32)
    now = time.time()
    new_id = conn.execute(
        insert(webhook_endpoints)
        .values(
            api_key_id=api_key_id,
            event_type=event_type,
            url=url,
            version=version,
            status=status,
            is_backup=is_backup,
            secret=keyring.encrypt(SECRET_PURPOSE, secret),
            created_at=now,
        )
        .returning(webhook_endpoints.c.id)
    ).scalar_one()
    record = EndpointRecord(new_id, api_key_id, event_type, url, version, status, is_backup, now)
    return record, secret.hex()


def endpoint_secret(keyring: Keyring, encrypted: bytes) -> bytes:
    return keyring.decrypt(SECRET_PURPOSE, encrypted)


def list_endpoints(conn: Connection, api_key_id: int) -> list[EndpointRecord]:
    query = select(webhook_endpoints).where(webhook_endpoints.c.api_key_id == api_key_id)
    return [_endpoint(row) for row in conn.execute(query.order_by(webhook_endpoints.c.id))]


def get_endpoint(conn: Connection, api_key_id: int, endpoint_id: int) -> EndpointRecord | None:
    row = conn.execute(
        select(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.api_key_id == api_key_id
        )
    ).first()
    return None if row is None else _endpoint(row)


def delete_endpoint(conn: Connection, api_key_id: int, endpoint_id: int) -> bool:
    conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id))
    deleted = conn.execute(
        delete(webhook_endpoints).where(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.api_key_id == api_key_id
        )
    ).rowcount
    return bool(deleted)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    endpoint_id: int
    state: str
    attempts: int
    event_count: int
    created_at: float
    next_attempt_at: float
    last_attempt_at: float | None
    last_status: int | None
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "EndpointID": self.endpoint_id,
            "State": self.state,
            "Attempts": self.attempts,
            "EventCount": self.event_count,
            "CreatedAt": self.created_at,
            "NextAttemptAt": self.next_attempt_at if self.state == "pending" else None,
            "LastAttemptAt": self.last_attempt_at,
            "LastStatus": self.last_status,
            "LastError": self.last_error,
        }


def list_deliveries(conn: Connection, endpoint_id: int, *, limit: int = 50) -> list[DeliveryRecord]:
    """The delivery log of an endpoint, newest first."""
    rows = conn.execute(
        select(webhook_deliveries)
        .where(webhook_deliveries.c.endpoint_id == endpoint_id)
        .order_by(webhook_deliveries.c.id.desc())
        .limit(limit)
    )
    return [
        DeliveryRecord(
            row.id,
            row.endpoint_id,
            row.state,
            row.attempts,
            row.event_count,
            row.created_at,
            row.next_attempt_at,
            row.last_attempt_at,
            row.last_status,
            row.last_error,
        )
        for row in rows
    ]
