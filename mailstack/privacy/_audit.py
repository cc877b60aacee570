"""The audit trail: who exported, erased, purged or re-keyed what, and when."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from mailstack.storage.schema import audit_log

__all__ = ["AuditEntry", "list_audit", "record_audit"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    subject: str | None
    detail: dict[str, Any]


def record_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    detail: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> int:
    """Append an entry; ``subject`` is a blind index, ``detail`` must hold no plaintext personal data."""
    return int(
        conn.execute(
            insert(audit_log)
            .values(
                at=time.time() if now is None else now,
                actor=actor[:200],
                action=action[:32],
                subject=subject,
                detail=dict(detail or {}),
            )
            .returning(audit_log.c.id)
        ).scalar_one()
    )


def list_audit(
    conn: Connection,
    *,
    action: str | None = None,
    subject: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries, newest first, optionally filtered."""
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    if subject is not None:
        query = query.where(audit_log.c.subject == subject)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    return [
        AuditEntry(row.id, row.at, row.actor, row.action, row.subject, dict(row.detail))
        for row in conn.execute(query)
    ]
