"""Event details at rest: what happened stays readable, what it says about the person is sealed.

Statistics, alarms and automation read an event's facts (its category, whether a machine opened it, the
link position) straight from the JSON; replies that quote addresses, IPs, user agents, clicked URLs and
anything else move into ``detail["sealed"]``, sealed under the day's shared key (mailstack.storage.Vault).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from ._vault import Vault

__all__ = [
    "PURPOSE_EVENT_DETAIL",
    "EventDetails",
    "is_sealed_detail",
    "open_details",
    "seal_details",
]

PURPOSE_EVENT_DETAIL = "events.detail"
_SEALED = "sealed"
# Facts, not personal data: kept readable for statistics, alarms and automation. A clicked "url" is not
# one of them: personalised links quote addresses and tokens (mailstack.stats opens it for its per-link
# counters, which keep it sealed too).
_CLEAR = frozenset(
    {"attempt", "attempts", "category", "dead_letter", "hard", "hard_bounce", "machine", "machine_reason",
     "method", "name", "one_click", "position", "proxy", "reason", "reply_code", "retry_at", "source",
     "status", "value"}
)  # fmt: skip
_CLEAR_MAILJET = frozenset({"blocked", "error", "error_related_to", "event", "hard_bounce", "mj_list_id"})


def _split(detail: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    clear: dict[str, Any] = {}
    personal: dict[str, Any] = {}
    for key, value in detail.items():
        if key == "mailjet" and isinstance(value, Mapping):
            clear[key] = {k: v for k, v in value.items() if k in _CLEAR_MAILJET}
            rest = {k: v for k, v in value.items() if k not in _CLEAR_MAILJET}
            if rest:
                personal[key] = rest
        elif key in _CLEAR or key == _SEALED:
            clear[key] = value
        else:
            personal[key] = value
    return clear, personal


def seal_details(
    conn: Connection, vault: Vault, details: Sequence[Mapping[str, Any]], *, shared_key: int | None = None
) -> list[dict[str, Any]]:
    """The details to store: facts in clear, the rest sealed under the day's shared key (looked up once
    for the batch, or ``shared_key`` when the caller has it already)."""
    split = [_split(detail) for detail in details]
    if not any(personal for _clear, personal in split):
        return [clear for clear, _personal in split]
    key = shared_key if shared_key is not None else vault.data_keys_for(conn, [None])[None]
    stored = []
    for clear, personal in split:
        if personal:
            text = json.dumps(personal, separators=(",", ":"), ensure_ascii=False).encode()
            blob = vault.seal_with(key, text, purpose=PURPOSE_EVENT_DETAIL)
            clear[_SEALED] = base64.b64encode(blob).decode("ascii")
        stored.append(clear)
    return stored


def open_details(conn: Connection, vault: Vault, stored: Sequence[Any]) -> list[dict[str, Any]]:
    """The details as written; the sealed part is left out when it can no longer be opened (erased)."""
    values = [dict(d) if isinstance(d, Mapping) else {} for d in stored]
    blobs = [base64.b64decode(d[_SEALED]) if isinstance(d.get(_SEALED), str) else None for d in values]
    opened = vault.open_many_optional(conn, blobs, purpose=PURPOSE_EVENT_DETAIL)
    result = []
    for detail, plain in zip(values, opened, strict=True):
        detail.pop(_SEALED, None)
        if plain is not None:
            for key, value in json.loads(plain).items():
                if key == "mailjet" and isinstance(detail.get(key), dict):
                    detail[key] = {**detail[key], **value}
                else:
                    detail[key] = value
        result.append(detail)
    return result


def is_sealed_detail(detail: Any) -> bool:
    """Whether a stored detail has nothing personal left in clear (used to convert old rows once)."""
    return isinstance(detail, Mapping) and not _split(detail)[1]


class EventDetails:
    """Event details at rest with the vault bound in (see :class:`~mailstack.storage.Store`)."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def seal(
        self, conn: Connection, details: Sequence[Mapping[str, Any]], *, shared_key: int | None = None
    ) -> list[dict[str, Any]]:
        """See :func:`seal_details`."""
        return seal_details(conn, self._vault, details, shared_key=shared_key)

    def open(self, conn: Connection, stored: Sequence[Any]) -> list[dict[str, Any]]:
        """See :func:`open_details`."""
        return open_details(conn, self._vault, stored)
