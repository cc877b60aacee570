"""``/api/v1/suppressions``: list, add and remove suppressed addresses (HTTP Basic auth, as elsewhere).

Mailjet has no exact equivalent (its blocked contacts live in contact lists), so the shape follows its
REST conventions: ``{"Count", "Total", "Data": [...]}`` with capitalised field names. The list belongs to
the installation, not to an API key: an address that hard-bounced is dead for every sender.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, Security
from fastapi.responses import JSONResponse

from mailstack.storage import (
    LAST_TIMESTAMP,
    ApiKeyRecord,
    Suppression,
    count_suppressions,
    list_suppressions,
    parse_scope,
    reading,
    suppress,
    unsuppress,
    valid_address,
    valid_expiry,
)

from ._auth import scope
from ._deps import MAX_ID, EmailPath, JsonDep, RuntimeDep
from ._errors import ERROR_RESPONSES, ApiError, error_responses

__all__ = ["router", "suppression_json"]

_MAX_REASON = 500
# What parse_scope accepts, for the document (the server also takes upper case, IDNs and a final dot).
SCOPE_PATTERN = (
    r"^([Gg][Ll][Oo][Bb][Aa][Ll]|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+)$"
)
_SCOPE_DOC = {"pattern": SCOPE_PATTERN}
_MAX_SCOPE = 253  # a domain name's longest
router = APIRouter(tags=["Suppressions"], responses=ERROR_RESPONSES)
SuppressionsKey = Annotated[ApiKeyRecord, Security(scope("suppressions"))]


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def suppression_json(entry: Suppression) -> dict[str, Any]:
    return {
        "Email": entry.address,
        "Scope": entry.scope,
        "Reason": entry.reason,
        "Source": entry.source,
        "MessageID": entry.message_id,
        "CreatedAt": _iso(entry.created_at),
        "ExpiresAt": _iso(entry.expires_at),
    }


def _expiry(value: object) -> float | None:
    """ISO-8601 (``2027-01-01T00:00:00Z``) or Unix seconds, from 1970 to the end of year 9999; raises
    ValueError (JSON's own parser already refused NaN and Infinity; 1e400 reads as infinity)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, int) and abs(value) > LAST_TIMESTAMP:
            raise ValueError("ExpiresAt must be a moment from 1970 to the end of year 9999")
        return valid_expiry(float(value))
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("ExpiresAt must be an ISO-8601 date-time or Unix seconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return valid_expiry(parsed.timestamp())
    raise ValueError("ExpiresAt must be an ISO-8601 date-time or Unix seconds")


@router.get("/api/v1/suppressions", summary="Suppressed addresses, newest first")
def listing(
    _api_key: SuppressionsKey,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    email: Annotated[str | None, Query(max_length=320)] = None,
    scope_name: Annotated[
        str | None,
        Query(
            alias="scope",
            max_length=_MAX_SCOPE,
            description="'global' or a sender domain",
            json_schema_extra=_SCOPE_DOC,
        ),
    ] = None,
    include_expired: Annotated[bool, Query(description="Entries no longer in force too")] = False,
) -> Response:
    if scope_name is not None and parse_scope(scope_name) is None:
        raise ApiError(400, f"invalid scope {scope_name!r}: 'global' or a domain")
    filters: dict[str, Any] = {
        "address": email,
        "scope": parse_scope(scope_name) if scope_name is not None else None,
        "include_expired": include_expired,
        "vault": runtime.vault,
    }
    with reading(runtime.engine) as conn:
        entries = list_suppressions(conn, limit=limit, offset=offset, **filters)
        total = count_suppressions(conn, **filters)
    data = [suppression_json(entry) for entry in entries]
    return JSONResponse({"Count": len(data), "Total": total, "Data": data})


@router.post(
    "/api/v1/suppressions",
    summary="Suppress an address (Email, Scope: global or a sender domain, Reason, ExpiresAt)",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["Email"],
                        "properties": {
                            "Email": {"type": "string", "format": "email"},
                            "Scope": {
                                "type": ["string", "null"],
                                "pattern": SCOPE_PATTERN,
                                "maxLength": _MAX_SCOPE,
                                "description": "'global' (default) or a sender domain",
                            },
                            "Reason": {"type": "string", "maxLength": _MAX_REASON},
                            "ExpiresAt": {
                                "description": "Unix seconds up to the end of year 9999 (or an ISO 8601 "
                                "date-time); absent or null: until removed",
                                "type": ["number", "null"],
                                "minimum": 0,
                                "maximum": LAST_TIMESTAMP,
                            },
                        },
                    }
                }
            },
        }
    },
)
def add(_api_key: SuppressionsKey, body: JsonDep, runtime: RuntimeDep) -> Response:
    fields = body.value
    if not isinstance(fields, dict):
        raise ApiError(400, "The body must be a JSON object")
    address = valid_address(fields.get("Email"))
    if address is None:
        raise ApiError(400, "Email must be an email address")
    scope_name = parse_scope(fields.get("Scope"))
    if scope_name is None:
        raise ApiError(400, "Scope must be 'global' or a sender domain")
    reason = fields.get("Reason", "")
    if not isinstance(reason, str) or len(reason) > _MAX_REASON:
        raise ApiError(400, f"Reason must be a string of at most {_MAX_REASON} characters")
    try:
        expires_at = _expiry(fields.get("ExpiresAt"))
    except (ValueError, TypeError) as exc:
        raise ApiError(400, str(exc)) from None
    now = time.time()
    with runtime.engine.begin() as conn:
        # An operator's entry replaces whatever was there: it is the explicit, latest word.
        suppress(
            conn,
            address,
            scope=scope_name,
            reason=reason or "added through the API",
            source="manual",
            now=now,
            expires_at=expires_at,
            replace=True,
            vault=runtime.vault,
        )
        (entry,) = list_suppressions(
            conn, address=address, scope=scope_name, include_expired=True, limit=1, vault=runtime.vault
        )
    return JSONResponse({"Count": 1, "Total": 1, "Data": [suppression_json(entry)]}, status_code=201)


@router.delete(
    "/api/v1/suppressions/{email}",
    summary="Remove an address from the list (every scope, or ?scope=)",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
def remove(
    email: EmailPath,
    _api_key: SuppressionsKey,
    runtime: RuntimeDep,
    scope_name: Annotated[
        str | None, Query(alias="scope", max_length=_MAX_SCOPE, json_schema_extra=_SCOPE_DOC)
    ] = None,
) -> Response:
    address = valid_address(email)
    scope_value = parse_scope(scope_name) if scope_name is not None else None
    if scope_name is not None and scope_value is None:
        raise ApiError(400, "expected /api/v1/suppressions/{email}[?scope=global|DOMAIN]")
    if address is None:
        raise ApiError(404, "Object not found: not an email address")
    with runtime.engine.begin() as conn:
        removed = unsuppress(conn, address, scope=scope_value, vault=runtime.vault)
    if removed == 0:
        raise ApiError(404, f"Object not found: suppression of {address}")
    return Response(status_code=204)
