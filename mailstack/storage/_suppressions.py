"""The suppression list and the soft-bounce history: who may not be mailed, and why.

Addresses are found by their blind index and stored sealed under their subject's key; the reason stays
readable for operators, without the address.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, delete, func, or_, select, text, update

from mailstack.addresses import redact_addresses

from ._blind import normalize_address
from ._dialect import dialect_insert
from ._feedback import soft_bounces, suppressions
from ._vault import Vault

__all__ = [
    "GLOBAL_SCOPE",
    "PURPOSE_SUPPRESSED_ADDRESS",
    "SUPPRESSION_SOURCES",
    "Suppression",
    "Suppressions",
    "active_suppressions",
    "count_suppressions",
    "list_suppressions",
    "normalize_address",
    "note_soft_bounce",
    "parse_scope",
    "preblocked_detail",
    "suppress",
    "suppression_key",
    "unsuppress",
    "valid_address",
]

PURPOSE_SUPPRESSED_ADDRESS = "suppressions.address"

GLOBAL_SCOPE = "global"
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")
# Why an address is suppressed: a hard bounce or a complaint at once, repeated soft bounces, the
# recipient's own unsubscribe, or an operator.
# "erasure": the data subject had everything erased; only this hashed entry keeps them from being mailed.
SUPPRESSION_SOURCES = ("hard_bounce", "complaint", "soft_bounce_limit", "unsubscribe", "manual", "erasure")


def valid_address(value: object) -> str | None:
    """The normalised address, or None when ``value`` is not a plausible mailbox."""
    if not isinstance(value, str) or len(value) > 320:
        return None
    address = normalize_address(value)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or not address.isprintable() or any(c.isspace() for c in address):
        return None
    return address


def parse_scope(value: object) -> str | None:
    """``global`` or a sender domain (lower-case, IDN as A-labels), None when invalid."""
    if value is None:
        return GLOBAL_SCOPE
    if not isinstance(value, str):
        return None
    scope = value.strip().lower().rstrip(".")
    if scope == GLOBAL_SCOPE:
        return scope
    try:
        scope = scope.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return scope if _DOMAIN.match(scope) else None


def _scope(value: str) -> str:
    # Sender domains compare as A-labels, whichever form the caller had.
    return parse_scope(value) or value.strip().lower()


# --- suppressions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suppression:
    address: str
    scope: str
    reason: str
    source: str
    message_id: int | None
    created_at: float
    expires_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "Email": self.address,
            "Scope": self.scope,
            "Reason": self.reason,
            "Source": self.source,
            "MessageID": self.message_id,
            "CreatedAt": self.created_at,
            "ExpiresAt": self.expires_at,
        }


# 9999-12-31T23:59:59Z: the last second a date-time can name (Python's, ISO 8601's, the API's).
LAST_TIMESTAMP = 253_402_300_799.0


def valid_expiry(expires_at: float | None) -> float | None:
    """``expires_at`` when it names a moment from 1970 to the end of year 9999; raises ValueError."""
    if expires_at is None:
        return None
    if not math.isfinite(expires_at) or not 0 <= expires_at <= LAST_TIMESTAMP:
        raise ValueError("ExpiresAt must be a moment from 1970 to the end of year 9999")
    return float(expires_at)


def _readable_expiry(row: Any) -> float | None:
    # Rows stored before expiries were validated may hold infinities, NaN (PostgreSQL) or years past
    # 9999, which no date-time can show. Read them as what the database does with them: in force for
    # ever (above any clock, and NaN sorts above every number), or lapsed (below 1970); and say so.
    value: float | None = row.expires_at
    if value is None or (math.isfinite(value) and 0 <= value <= LAST_TIMESTAMP):
        return value
    readable = 0.0 if value < 0 else None  # NaN < 0 is false: NaN reads as "until removed"
    structlog.get_logger("mailstack.storage").warning(
        "suppression with an unreadable expiry",
        scope=row.scope,
        source=row.source,
        stored=repr(value),
        read_as="lapsed" if readable is not None else "until removed",
    )
    return readable


def _row(row: Any, address: str) -> Suppression:
    return Suppression(
        address, row.scope, row.reason, row.source, row.message_id, row.created_at, _readable_expiry(row)
    )


def _rows(conn: Connection, vault: Vault, rows: Sequence[Any], address: str | None) -> list[Suppression]:
    # The caller who looked an address up knows it already; a listing decrypts ("" once erased).
    if address is not None:
        return [_row(r, normalize_address(address)) for r in rows]
    result = []
    for r in rows:
        plain = vault.open_optional(conn, r.address, purpose=PURPOSE_SUPPRESSED_ADDRESS)
        result.append(_row(r, "" if plain is None else plain.decode()))
    return result


def _redact(reason: str, address: str) -> str:
    # Relay replies quote the recipient ("550 5.1.1 <ana@example.net>: no such user"); the reason is
    # stored in the clear for operators, the address only sealed. Any other address it quotes (a
    # forwarding target, the original recipient of a DSN) goes too.
    if address:
        reason = re.sub(re.escape(address), "<recipient>", reason, flags=re.IGNORECASE)
    return redact_addresses(reason)


def _active(now: float) -> Any:
    return or_(suppressions.c.expires_at.is_(None), suppressions.c.expires_at > now)


def suppress(
    conn: Connection,
    address: str,
    *,
    scope: str,
    reason: str,
    source: str,
    now: float,
    expires_at: float | None = None,
    message_id: int | None = None,
    replace: bool = False,
    vault: Vault,
) -> bool:
    """Suppress ``address`` for ``scope``; returns True when the list changed.

    An existing entry for the same address and scope is kept when it already lasts at least as long
    (a permanent hard-bounce entry is never shortened by a later soft-bounce one); ``replace`` (an
    operator's explicit add) overwrites it whatever it was.
    """
    if source not in SUPPRESSION_SOURCES:
        raise ValueError(f"unknown suppression source {source!r}")
    expires_at = valid_expiry(expires_at)
    normalized = normalize_address(address)
    index = vault.index(normalized)
    values = {
        "address_index": index,
        # An erasure keeps only the hashed entry: the address itself is what was erased.
        "address": None
        if source == "erasure"
        else vault.seal(conn, normalized.encode(), purpose=PURPOSE_SUPPRESSED_ADDRESS, subject=index),
        "scope": _scope(scope),
        "reason": _redact(reason, normalized)[:2000],
        "source": source,
        "message_id": message_id,
        "created_at": now,
        "expires_at": expires_at,
    }
    inserted = conn.execute(
        dialect_insert(conn, suppressions)
        .on_conflict_do_nothing(index_elements=["address_index", "scope"])
        .returning(suppressions.c.id),
        values,
    ).first()
    if inserted is not None:
        return True
    where = [suppressions.c.address_index == index, suppressions.c.scope == values["scope"]]
    if not replace:
        # Only lengthen: an expired entry, or one ending sooner than the new one, is renewed.
        if expires_at is None:
            where.append(suppressions.c.expires_at.is_not(None))
        else:
            where.append(suppressions.c.expires_at.is_not(None))
            where.append(suppressions.c.expires_at < expires_at)
    changed = conn.execute(update(suppressions).where(*where).values(**values)).rowcount
    return bool(changed)


def unsuppress(conn: Connection, address: str, *, scope: str | None = None, vault: Vault) -> int:
    """Remove ``address`` from the list (every scope unless one is given); returns how many entries.

    An erasure's entry stays: the data subject asked never to be mailed again.
    """
    query = delete(suppressions).where(
        suppressions.c.address_index == vault.index(address), suppressions.c.source != "erasure"
    )
    if scope is not None:
        query = query.where(suppressions.c.scope == _scope(scope))
    return int(conn.execute(query).rowcount)


def list_suppressions(
    conn: Connection,
    *,
    address: str | None = None,
    scope: str | None = None,
    include_expired: bool = False,
    limit: int = 100,
    offset: int = 0,
    now: float | None = None,
    vault: Vault,
) -> list[Suppression]:
    """Entries, newest first; an erased subject's entry has an empty address."""
    query = _filtered(
        select(suppressions),
        vault=vault,
        address=address,
        scope=scope,
        include_expired=include_expired,
        now=now,
    )
    query = query.order_by(suppressions.c.created_at.desc(), suppressions.c.id.desc())
    return _rows(conn, vault, conn.execute(query.limit(limit).offset(offset)).all(), address)


def count_suppressions(
    conn: Connection,
    *,
    address: str | None = None,
    scope: str | None = None,
    include_expired: bool = False,
    now: float | None = None,
    vault: Vault,
) -> int:
    """How many entries :func:`list_suppressions` would list without a limit."""
    query = _filtered(
        select(func.count()).select_from(suppressions),
        vault=vault,
        address=address,
        scope=scope,
        include_expired=include_expired,
        now=now,
    )
    return int(conn.execute(query).scalar_one())


def _filtered(
    query: Any,
    *,
    vault: Vault,
    address: str | None,
    scope: str | None,
    include_expired: bool,
    now: float | None,
) -> Any:
    if address is not None:
        query = query.where(suppressions.c.address_index == vault.index(address))
    if scope is not None:
        query = query.where(suppressions.c.scope == _scope(scope))
    if not include_expired:
        query = query.where(_active(time.time() if now is None else now))
    return query


def preblocked_detail(entry: Suppression) -> dict[str, Any]:
    """The ``blocked`` event of a message refused because its recipient is suppressed.

    ``mailjet`` holds the fields Mailjet's Event API adds to a blocked event (its "preblocked" error), so
    a webhook can send them as they are; ``suppression`` says which entry blocked it.
    """
    return {
        "mailjet": {"event": "blocked", "error_related_to": "mailjet", "error": "preblocked"},
        "suppression": {"scope": entry.scope, "source": entry.source, "reason": entry.reason},
    }


def suppression_key(recipient: str, sender: str) -> tuple[str, str]:
    """The key :func:`active_suppressions` answers by, for a recipient and a sender address."""
    return normalize_address(recipient), _scope(sender.rpartition("@")[2])


# PostgreSQL: a batch's active entries by one statement whose text is the same whatever the batch size
# (an ``IN`` list of more than 50 parameters is converted again by psycopg for every batch, and the server
# cannot reuse its plan). One index lookup per address (LATERAL, kept a subquery by OFFSET 0) rather than
# ``address_index = ANY(...)``, whose generic plan, made once while the table may still be small, can be
# a sequential scan (see mailstack.storage._vault._PG_KEYS).
_PG_ACTIVE = text(
    """
SELECT s.address_index, s.scope, s.reason, s.source, s.message_id, s.created_at, s.expires_at
FROM unnest(CAST(:indexes AS VARCHAR[])) AS k(address_index)
CROSS JOIN LATERAL (
    SELECT * FROM suppressions AS e
    WHERE e.address_index = k.address_index
      AND (e.expires_at IS NULL OR e.expires_at > CAST(:now AS DOUBLE PRECISION))
    OFFSET 0
) AS s
"""
)


def _suppression_rows(conn: Connection, indexes: Sequence[str], now: float) -> Iterable[Iterable[Any]]:
    if conn.dialect.name == "postgresql":
        yield conn.execute(_PG_ACTIVE, {"indexes": list(indexes), "now": now})
        return
    for start in range(0, len(indexes), 500):  # stay far below every backend's parameter limit
        chunk = indexes[start : start + 500]
        yield conn.execute(select(suppressions).where(suppressions.c.address_index.in_(chunk), _active(now)))


def active_suppressions(
    conn: Connection, recipients: Iterable[tuple[str, str]], *, now: float, vault: Vault
) -> dict[tuple[str, str], Suppression]:
    """Which ``(recipient, sender domain)`` pairs may not be mailed, with the entry that forbids it.

    One query for a whole batch: the addresses' entries, then global or same-domain scope in Python.
    """
    pairs = {(normalize_address(r), _scope(d)) for r, d in recipients}
    if not pairs:
        return {}
    by_index = {vault.index(address): address for address, _domain in pairs}
    indexes = sorted(by_index)
    found: dict[str, list[Suppression]] = {}
    for rows in _suppression_rows(conn, indexes, now):
        for row in rows:
            address = by_index[row.address_index]
            found.setdefault(address, []).append(_row(row, address))
    result: dict[tuple[str, str], Suppression] = {}
    for address, domain in pairs:
        for entry in found.get(address, ()):
            if entry.scope in (GLOBAL_SCOPE, domain):
                result[(address, domain)] = entry
                break
    return result


def note_soft_bounce(
    conn: Connection, address: str, message_id: int, *, now: float, window: float, vault: Vault
) -> int:
    """Remember that ``message_id`` soft-bounced; returns the address's soft bounces within ``window``.

    Each message counts once however often it is reported; rows older than the window are pruned here,
    so the table holds at most the window's worth of history.
    """
    index = vault.index(address)
    conn.execute(
        dialect_insert(conn, soft_bounces).on_conflict_do_nothing(
            index_elements=["address_index", "message_id"]
        ),
        {"address_index": index, "message_id": message_id, "created_at": now},
    )
    cutoff = now - window
    conn.execute(
        delete(soft_bounces).where(soft_bounces.c.address_index == index, soft_bounces.c.created_at < cutoff)
    )
    query = select(func.count()).select_from(soft_bounces).where(soft_bounces.c.address_index == index)
    return int(conn.execute(query).scalar_one())


class Suppressions:
    """The suppression list and soft-bounce history with the vault bound in (see
    :class:`~mailstack.storage.Store`). Every method runs in the caller's transaction."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def suppress(
        self,
        conn: Connection,
        address: str,
        *,
        scope: str,
        reason: str,
        source: str,
        now: float,
        expires_at: float | None = None,
        message_id: int | None = None,
        replace: bool = False,
    ) -> bool:
        """See :func:`suppress`."""
        return suppress(
            conn,
            address,
            scope=scope,
            reason=reason,
            source=source,
            now=now,
            expires_at=expires_at,
            message_id=message_id,
            replace=replace,
            vault=self._vault,
        )

    def unsuppress(self, conn: Connection, address: str, *, scope: str | None = None) -> int:
        """See :func:`unsuppress`."""
        return unsuppress(conn, address, scope=scope, vault=self._vault)

    def list(
        self,
        conn: Connection,
        *,
        address: str | None = None,
        scope: str | None = None,
        include_expired: bool = False,
        limit: int = 100,
        offset: int = 0,
        now: float | None = None,
    ) -> list[Suppression]:
        """See :func:`list_suppressions`."""
        return list_suppressions(
            conn,
            address=address,
            scope=scope,
            include_expired=include_expired,
            limit=limit,
            offset=offset,
            now=now,
            vault=self._vault,
        )

    def count(
        self,
        conn: Connection,
        *,
        address: str | None = None,
        scope: str | None = None,
        include_expired: bool = False,
        now: float | None = None,
    ) -> int:
        """See :func:`count_suppressions`."""
        return count_suppressions(
            conn, address=address, scope=scope, include_expired=include_expired, now=now, vault=self._vault
        )

    def active(
        self, conn: Connection, recipients: Iterable[tuple[str, str]], *, now: float
    ) -> dict[tuple[str, str], Suppression]:
        """See :func:`active_suppressions`."""
        return active_suppressions(conn, recipients, now=now, vault=self._vault)

    def note_soft_bounce(
        self, conn: Connection, address: str, message_id: int, *, now: float, window: float
    ) -> int:
        """See :func:`note_soft_bounce`."""
        return note_soft_bounce(conn, address, message_id, now=now, window=window, vault=self._vault)
