"""Proving an erasure: everything the database still holds, opened with the vault and searched.

:func:`readable_texts` reads every row of every table mailstack has and turns each value into text as a
reader holding the master secret would: sealed blobs opened (under their ``<table>.<column>`` purpose),
event details with their sealed part, MIME messages (a submitted ``Raw``, a sandbox copy) with every
header decoded (RFC 2047) and every part's body decoded (base64, quoted-printable, charset).
What a thief of the files gets is :func:`support.stored_bytes` (``dead_rows=True`` for PostgreSQL's
dead row versions too).
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
from typing import Any

from sqlalchemy import Engine, inspect, select

from mailstack.privacy import Vault, is_sealed
from mailstack.storage import open_details, schema


def _mime_texts(data: bytes) -> list[str]:
    """A message's headers (decoded) and the decoded bodies of all its parts."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    found = [data.decode("utf-8", "replace")]
    for part in message.walk():
        found.extend(f"{name}: {value}" for name, value in part.items())
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                found.append(payload.decode(charset, "replace"))
            except LookupError:
                found.append(payload.decode("latin-1"))
    return found


def _value_texts(conn: Any, vault: Vault, table: str, column: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, memoryview):
        value = bytes(value)
    if isinstance(value, bytes):
        if not is_sealed(value):
            return [value.decode("latin-1")]
        plain = vault.open_optional(conn, value, purpose=f"{table}.{column}")
        if plain is None:
            return []  # erased: its data key is gone
        found = [plain.decode("utf-8", "replace")]
        if table == "outbox" and column == "data":
            found.extend(_mime_texts(plain))
        if table == "contents" and column == "spec":
            raw = json.loads(plain).get("Raw")
            if raw:
                found.extend(_mime_texts(base64.b64decode(raw)))
        return found
    if table == "events" and column == "detail":
        (opened,) = open_details(conn, vault, [value])
        return [json.dumps(value), json.dumps(opened, ensure_ascii=False)]
    if isinstance(value, dict | list):
        return [json.dumps(value, ensure_ascii=False)]
    return [str(value)]


def readable_texts(engine: Engine, vault: Vault) -> list[tuple[str, str]]:
    """``(table.column, text)`` for every value still in the database, opened as far as it opens."""
    found: list[tuple[str, str]] = []
    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names()) & set(schema.metadata.tables)
        for name in sorted(present):
            for row in conn.execute(select(schema.metadata.tables[name])).mappings():
                for column, value in row.items():
                    found.extend(
                        (f"{name}.{column}", item) for item in _value_texts(conn, vault, name, column, value)
                    )
    return found


def mentions(engine: Engine, vault: Vault, address: str) -> list[str]:
    """Where (``table.column``) the address can still be read, any case, ``%40`` for ``@`` too."""
    wanted = (address.lower(), address.lower().replace("@", "%40"))
    return sorted(
        {where for where, item in readable_texts(engine, vault) if any(w in item.lower() for w in wanted)}
    )
