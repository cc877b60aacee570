"""Data-subject rights over HTTP: ``/api/v1/privacy/subjects/{email}`` (export: GET, erase: DELETE) and
the audit trail ``/api/v1/privacy/audit``. Every route needs the admin-only ``privacy`` scope, which no
key holds unless granted (``mailstack apikey scopes KEY --scope privacy``); the actor recorded in the
audit trail is ``api:<public key>``. An erasure's answer is its report plus ``vacuumed``: whether the old
row versions were reclaimed afterwards (see ``mailstack/privacy/_vacuum.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, Security
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from mailstack.privacy import AuditEntry, list_audit
from mailstack.privacy._subject import erase_subject, export_subject, vacuum_erased
from mailstack.runtime import Runtime
from mailstack.storage import ApiKeyRecord, reading, valid_address

from ._auth import scope
from ._deps import EmailPath, RuntimeDep
from ._errors import ERROR_RESPONSES, ApiError, error_responses
from ._stats import TIMESTAMP_SCHEMA, StatsParamError, parse_timestamp

__all__ = ["router"]

_MAX_AUDIT = 1000
router = APIRouter(tags=["Privacy"], responses=ERROR_RESPONSES)
PrivacyKey = Annotated[ApiKeyRecord, Security(scope("privacy"))]
_NO_STORE = {"Cache-Control": "no-store"}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry in the API's shape."""
    return {
        "ID": entry.id,
        "At": _iso(entry.at),
        "Actor": entry.actor,
        "Action": entry.action,
        "Subject": entry.subject,
        "Detail": entry.detail,
    }


def _on_subject(
    runtime: Runtime,
    api_key: ApiKeyRecord,
    email: str,
    operation: Callable[[Connection, str, str], dict[str, Any]],
    after_commit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Response:
    """Validate the address, run ``operation(conn, address, actor)`` in a transaction (then
    ``after_commit`` on its result, outside it)."""
    address = valid_address(email)
    if address is None:
        raise ApiError(404, "Object not found: not an email address")
    actor = f"api:{api_key.public_key}"
    with runtime.engine.begin() as conn:  # a transaction: the operation and its audit entry go together
        result = operation(conn, address, actor)
    if after_commit is not None:
        result = after_commit(result)
    return JSONResponse(result, headers=_NO_STORE)


@router.get(
    "/api/v1/privacy/subjects/{email}",
    summary="Everything held about an address, as JSON (GDPR access); audited",
    responses=error_responses(404),
)
def export_route(email: EmailPath, api_key: PrivacyKey, runtime: RuntimeDep) -> Response:
    return _on_subject(
        runtime,
        api_key,
        email,
        lambda conn, address, actor: export_subject(
            conn, runtime.vault, runtime.keyring, address, actor=actor
        ),
    )


@router.delete(
    "/api/v1/privacy/subjects/{email}",
    summary="Erase an address (GDPR erasure): delete, crypto-shred, keep a hashed suppression; audited",
    responses=error_responses(404),
)
def erase_route(email: EmailPath, api_key: PrivacyKey, runtime: RuntimeDep) -> Response:
    return _on_subject(
        runtime,
        api_key,
        email,
        lambda conn, address, actor: dict(
            erase_subject(conn, runtime.vault, runtime.keyring, address, actor=actor).as_dict()
        ),
        # Old row versions still on disk are reclaimed once the erasure has committed.
        lambda report: {**report, "vacuumed": vacuum_erased(runtime.engine)},
    )


@router.get(
    "/api/v1/privacy/audit",
    summary="The audit trail, newest first (?action=, ?email= or ?subject=, ?since=, ?limit=)",
    # Documented by hand: its schema is a timestamp, read from a string that may be a date-time too.
    openapi_extra={"parameters": [{"name": "since", "in": "query", "schema": TIMESTAMP_SCHEMA}]},
)
def audit_route(
    _api_key: PrivacyKey,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=_MAX_AUDIT)] = 100,
    since: Annotated[str | None, Query(max_length=64, include_in_schema=False)] = None,
    email: Annotated[str | None, Query(max_length=320, json_schema_extra={"format": "email"})] = None,
    subject: Annotated[str | None, Query(max_length=128, description="A blind index")] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    try:
        since_at = parse_timestamp(since, "since") if since is not None else None
    except StatsParamError as exc:
        raise ApiError(400, str(exc)) from None
    if email is not None:  # ?email= names no one: refused, not "every subject"
        address = valid_address(email)
        if address is None:
            raise ApiError(400, "email must be an email address")
        subject = runtime.vault.index(address)
    with reading(runtime.engine) as conn:
        entries = list_audit(conn, action=action or None, subject=subject, since=since_at, limit=limit)
    data = [audit_json(entry) for entry in entries]
    return JSONResponse({"Count": len(data), "Data": data}, headers=_NO_STORE)
