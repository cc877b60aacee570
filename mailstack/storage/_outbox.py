"""The sandbox outbox: signed copies of what would have left, kept instead of being sent."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from ._schema import messages, outbox
from ._vault import Vault

__all__ = [
    "PURPOSE_OUTBOX_DATA",
    "PURPOSE_RCPT_TO",
    "Outbox",
    "OutboxItem",
    "list_outbox",
    "store_outbox",
]

PURPOSE_RCPT_TO = "outbox.rcpt_to"
PURPOSE_OUTBOX_DATA = "outbox.data"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    message_id: int
    mail_from: str
    rcpt_to: str
    created_at: float
    data: bytes | None


def store_outbox(
    conn: Connection, message_id: int, mail_from: str, rcpt_to: str, data: bytes, *, now: float, vault: Vault
) -> None:
    """Keep a sandboxed copy, sealed under its recipient's data key."""
    subject = vault.index(rcpt_to)
    key = vault.data_keys_for(conn, {subject})[subject]
    conn.execute(
        insert(outbox).values(
            message_id=message_id,
            mail_from=mail_from,
            rcpt_to=vault.seal_with(key, rcpt_to.encode(), purpose=PURPOSE_RCPT_TO),
            data=vault.seal_with(key, data, purpose=PURPOSE_OUTBOX_DATA),
            created_at=now,
        )
    )


def list_outbox(
    conn: Connection,
    *,
    api_key_id: int | None = None,
    message_id: int | None = None,
    limit: int = 100,
    with_data: bool = False,
    vault: Vault,
) -> list[OutboxItem]:
    """Sandboxed copies, newest first, decrypted (erased recipients' copies are left out)."""
    columns = [outbox.c.id, outbox.c.message_id, outbox.c.mail_from, outbox.c.rcpt_to, outbox.c.created_at]
    if with_data:
        columns.append(outbox.c.data)
    query = select(*columns).order_by(outbox.c.id.desc()).limit(limit)
    if api_key_id is not None:
        query = query.join(messages, messages.c.id == outbox.c.message_id).where(
            messages.c.api_key_id == api_key_id
        )
    if message_id is not None:
        query = query.where(outbox.c.message_id == message_id)
    items = []
    for r in conn.execute(query):
        rcpt_to = vault.open_optional(conn, r.rcpt_to, purpose=PURPOSE_RCPT_TO)
        if rcpt_to is None:
            continue
        data = vault.open(conn, r.data, purpose=PURPOSE_OUTBOX_DATA) if with_data else None
        items.append(OutboxItem(r.id, r.message_id, r.mail_from, rcpt_to.decode(), r.created_at, data))
    return items


class Outbox:
    """The sandbox outbox with the vault bound in (see :class:`~mailstack.storage.Store`)."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def store(
        self, conn: Connection, message_id: int, mail_from: str, rcpt_to: str, data: bytes, *, now: float
    ) -> None:
        """See :func:`store_outbox`."""
        store_outbox(conn, message_id, mail_from, rcpt_to, data, now=now, vault=self._vault)

    def list(
        self,
        conn: Connection,
        *,
        api_key_id: int | None = None,
        message_id: int | None = None,
        limit: int = 100,
        with_data: bool = False,
    ) -> list[OutboxItem]:
        """See :func:`list_outbox`."""
        return list_outbox(
            conn,
            api_key_id=api_key_id,
            message_id=message_id,
            limit=limit,
            with_data=with_data,
            vault=self._vault,
        )
