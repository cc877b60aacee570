"""``/api/v1/suppressions``: list, add and remove suppressed addresses (HTTP Basic auth, as elsewhere).

Mailjet has no exact equivalent (its blocked contacts live in contact lists), so the shape follows its
REST conventions: ``{"Count", "Total", "Data": [...]}`` with capitalised field names. The list belongs to
the installation, not to an API key: an address that hard-bounced is dead for every sender.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mailstack.runtime import Runtime
from mailstack.storage import (
    ApiKeyRecord,
    Suppression,
    count_suppressions,
    list_suppressions,
    parse_scope,
    suppress,
    unsuppress,
    valid_address,
)

from ._auth import Authenticator, authenticate_request

__all__ = ["register_suppressions", "suppression_json"]

_Handler = Callable[[Request, ApiKeyRecord], Awaitable[Response]]
_MAX_REASON = 500


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
    """ISO-8601 (``2027-01-01T00:00:00Z``) or Unix seconds; raises ValueError."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise ValueError("ExpiresAt must be an ISO-8601 date-time or Unix seconds")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"StatusCode": status, "ErrorMessage": message}, status_code=status)


def register_suppressions(app: FastAPI, runtime: Runtime, auth: Authenticator) -> None:
    """Add the suppression-list routes to ``app``."""
    engine = runtime.engine

    async def authenticated(request: Request, handler: _Handler) -> Response:
        record = await authenticate_request(auth, request, "suppressions")
        if isinstance(record, Response):
            return record
        return await handler(request, record)

    async def listing(request: Request, _api_key: ApiKeyRecord) -> Response:
        params = request.query_params
        try:
            limit = min(max(int(params.get("limit", "100") or 100), 1), 1000)
            offset = max(int(params.get("offset", "0") or 0), 0)
        except ValueError:
            return _error(400, "limit and offset must be integers")
        email = params.get("email")
        scope = params.get("scope")
        if scope is not None and parse_scope(scope) is None:
            return _error(400, f"invalid scope {scope!r}: 'global' or a domain")
        include_expired = params.get("include_expired", "").lower() in ("1", "true", "yes")
        filters: dict[str, Any] = {
            "address": email,
            "scope": parse_scope(scope) if scope is not None else None,
            "include_expired": include_expired,
            "vault": runtime.vault,
        }

        def load() -> tuple[list[Suppression], int]:
            with engine.connect() as conn:
                entries = list_suppressions(conn, limit=limit, offset=offset, **filters)
                return entries, count_suppressions(conn, **filters)

        entries, total = await run_in_threadpool(load)
        data = [suppression_json(entry) for entry in entries]
        return JSONResponse({"Count": len(data), "Total": total, "Data": data})

    async def add(request: Request, _api_key: ApiKeyRecord) -> Response:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Malformed JSON")
        if not isinstance(body, dict):
            return _error(400, "The body must be a JSON object")
        address = valid_address(body.get("Email"))
        if address is None:
            return _error(400, "Email must be an email address")
        scope = parse_scope(body.get("Scope"))
        if scope is None:
            return _error(400, "Scope must be 'global' or a sender domain")
        reason = body.get("Reason", "")
        if not isinstance(reason, str) or len(reason) > _MAX_REASON:
            return _error(400, f"Reason must be a string of at most {_MAX_REASON} characters")
        try:
            expires_at = _expiry(body.get("ExpiresAt"))
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))

        def store() -> list[Suppression]:
            now = time.time()
            with engine.begin() as conn:
                # An operator's entry replaces whatever was there: it is the explicit, latest word.
                suppress(
                    conn,
                    address,
                    scope=scope,
                    reason=reason or "added through the API",
                    source="manual",
                    now=now,
                    expires_at=expires_at,
                    replace=True,
                    vault=runtime.vault,
                )
                return list_suppressions(
                    conn, address=address, scope=scope, include_expired=True, limit=1, vault=runtime.vault
                )

        (entry,) = await run_in_threadpool(store)
        return JSONResponse({"Count": 1, "Total": 1, "Data": [suppression_json(entry)]}, status_code=201)

    async def remove(request: Request, _api_key: ApiKeyRecord) -> Response:
        address = valid_address(request.path_params["email"])
        scope_param = request.query_params.get("scope")
        scope = parse_scope(scope_param) if scope_param is not None else None
        if address is None or (scope_param is not None and scope is None):
            return _error(400, "expected /api/v1/suppressions/{email}[?scope=global|DOMAIN]")

        def drop() -> int:
            with engine.begin() as conn:
                return unsuppress(conn, address, scope=scope, vault=runtime.vault)

        if await run_in_threadpool(drop) == 0:
            return _error(404, f"Object not found: suppression of {address}")
        return Response(status_code=204)

    @app.get("/api/v1/suppressions", tags=["Suppressions"], summary="Suppressed addresses, newest first")
    async def list_route(request: Request) -> Response:
        return await authenticated(request, listing)

    @app.post(
        "/api/v1/suppressions",
        tags=["Suppressions"],
        summary="Suppress an address (Email, Scope: global or a sender domain, Reason, ExpiresAt)",
        status_code=201,
    )
    async def add_route(request: Request) -> Response:
        return await authenticated(request, add)

    @app.delete(
        "/api/v1/suppressions/{email}",
        tags=["Suppressions"],
        summary="Remove an address from the list (every scope, or ?scope=)",
        status_code=204,
    )
    async def remove_route(request: Request) -> Response:
        return await authenticated(request, remove)
