"""Sealed JSON and text columns: the small conversions every repository shares."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from ._vault import Vault

__all__ = ["open_json", "open_text", "seal_json"]


def seal_json(conn: Connection, vault: Vault, value: Any, *, purpose: str, subject: str | None) -> bytes:
    """``value`` as compact JSON, sealed."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return vault.seal(conn, text.encode(), purpose=purpose, subject=subject)


def open_json(conn: Connection, vault: Vault, blob: bytes, *, purpose: str) -> Any:
    """Inverse of :func:`seal_json`."""
    return json.loads(vault.open(conn, blob, purpose=purpose))


def open_text(conn: Connection, vault: Vault, blob: bytes | None, *, purpose: str, erased: str = "") -> str:
    """A sealed text column: "" for NULL, ``erased`` when its data subject was erased."""
    plain = vault.open_optional(conn, blob, purpose=purpose)
    return erased if plain is None else plain.decode()
