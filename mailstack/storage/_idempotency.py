"""Idempotent Send API responses: a retried request with the same key gets the stored answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from ._schema import idempotency_keys
from ._sealing import open_json, seal_json
from ._vault import Vault

__all__ = [
    "PURPOSE_IDEMPOTENT_RESPONSE",
    "IdempotentResponse",
    "IdempotentResponses",
    "get_idempotent_response",
    "save_idempotent_response",
]

PURPOSE_IDEMPOTENT_RESPONSE = "idempotency_keys.response"


@dataclass(frozen=True, slots=True)
class IdempotentResponse:
    request_hash: str
    status_code: int
    body: Any


def get_idempotent_response(
    conn: Connection, api_key_id: int, key: str, *, vault: Vault
) -> IdempotentResponse | None:
    row = conn.execute(
        select(idempotency_keys).where(
            idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key
        )
    ).first()
    if row is None:
        return None
    return IdempotentResponse(
        row.request_hash,
        row.status_code,
        open_json(conn, vault, row.response, purpose=PURPOSE_IDEMPOTENT_RESPONSE),
    )


def save_idempotent_response(
    conn: Connection,
    api_key_id: int,
    key: str,
    request_hash: str,
    status_code: int,
    body: Any,
    *,
    now: float,
    vault: Vault,
) -> None:
    """Insert the response; raises IntegrityError when a concurrent request with the key won the race."""
    conn.execute(
        insert(idempotency_keys).values(
            api_key_id=api_key_id,
            key=key,
            request_hash=request_hash,
            status_code=status_code,
            # It lists the recipients: sealed under the day's shared key (it names several).
            response=seal_json(conn, vault, body, purpose=PURPOSE_IDEMPOTENT_RESPONSE, subject=None),
            created_at=now,
        )
    )


class IdempotentResponses:
    """Stored Send API responses with the vault bound in (see :class:`~mailstack.storage.Store`)."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def get(self, conn: Connection, api_key_id: int, key: str) -> IdempotentResponse | None:
        """See :func:`get_idempotent_response`."""
        return get_idempotent_response(conn, api_key_id, key, vault=self._vault)

    def save(
        self,
        conn: Connection,
        api_key_id: int,
        key: str,
        request_hash: str,
        status_code: int,
        body: Any,
        *,
        now: float,
    ) -> None:
        """See :func:`save_idempotent_response`."""
        save_idempotent_response(
            conn, api_key_id, key, request_hash, status_code, body, now=now, vault=self._vault
        )
