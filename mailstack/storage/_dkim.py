"""DKIM keys: each sending domain's selectors, private keys encrypted with the master secret."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from ._schema import dkim_keys

__all__ = [
    "DkimKeyRow",
    "DkimKeys",
    "add_dkim_key",
    "list_dkim_keys",
]


@dataclass(frozen=True, slots=True)
class DkimKeyRow:
    domain: str
    selector: str
    algorithm: str
    encrypted_pem: bytes
    created_at: float
    activates_at: float
    active: bool


def add_dkim_key(
    conn: Connection, domain: str, selector: str, algorithm: str, encrypted_pem: bytes, *, activates_at: float
) -> None:
    conn.execute(
        insert(dkim_keys).values(
            domain=domain.lower(),
            selector=selector,
            algorithm=algorithm,
            private_key=encrypted_pem,
            created_at=time.time(),
            activates_at=activates_at,
        )
    )


def list_dkim_keys(
    conn: Connection, *, domain: str | None = None, active_only: bool = True
) -> list[DkimKeyRow]:
    query = select(dkim_keys).order_by(dkim_keys.c.domain, dkim_keys.c.created_at, dkim_keys.c.id)
    if domain is not None:
        query = query.where(dkim_keys.c.domain == domain.lower())
    if active_only:
        query = query.where(dkim_keys.c.active.is_(True))
    return [
        DkimKeyRow(r.domain, r.selector, r.algorithm, r.private_key, r.created_at, r.activates_at, r.active)
        for r in conn.execute(query)
    ]


class DkimKeys:
    """The DKIM keys aggregate (see :class:`~mailstack.storage.Store`)."""

    def add(
        self,
        conn: Connection,
        domain: str,
        selector: str,
        algorithm: str,
        encrypted_pem: bytes,
        *,
        activates_at: float,
    ) -> None:
        """See :func:`add_dkim_key`."""
        add_dkim_key(conn, domain, selector, algorithm, encrypted_pem, activates_at=activates_at)

    def list(
        self, conn: Connection, *, domain: str | None = None, active_only: bool = True
    ) -> list[DkimKeyRow]:
        """See :func:`list_dkim_keys`."""
        return list_dkim_keys(conn, domain=domain, active_only=active_only)
