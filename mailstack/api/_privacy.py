"""Data-subject rights over HTTP: ``/api/v1/privacy/subjects/{email}`` (export: GET, erase: DELETE) and
the audit trail ``/api/v1/privacy/audit``. Every route needs the admin-only ``privacy`` scope, which no
key holds unless granted (``mailstack apikey scopes KEY --scope privacy``); the actor recorded in the
audit trail is ``api:<public key>``. An erasure's answer is its report plus ``vacuumed``: whether the old
row versions were reclaimed afterwards (see ``mailstack/privacy/_vacuum.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from mailstack.privacy import AuditEntry, list_audit
from mailstack.privacy._subject import erase_subject, export_subject, vacuum_erased
from mailstack.runtime import Runtime
from mailstack.storage import valid_address

from ._auth import Authenticator, authenticate_request
from ._stats import StatsParamError, parse_timestamp

__all__ = ["register_privacy"]

_MAX_AUDIT = 1000


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"StatusCode": status, "ErrorMessage": message}, status_code=status)


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


def register_privacy(app: FastAPI, runtime: Runtime, auth: Authenticator) -> None:
    """Add the data-subject and audit routes to ``app``."""
    engine = runtime.engine
    vault = runtime.vault
    keyring = runtime.keyring

    async def on_subject(
        email: str,
        request: Request,
        operation: Callable[[Connection, str, str], dict[str, Any]],
        after_commit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Response:
        """Authenticate, validate the address, run ``operation(conn, address, actor)`` in a transaction
        (then ``after_commit`` on its result, outside it)."""
        api_key = await authenticate_request(auth, request, "privacy")
        if isinstance(api_key, Response):
            return api_key
        address = valid_address(email)
        if address is None:
            return _error(400, "expected /api/v1/privacy/subjects/{email}")
        actor = f"api:{api_key.public_key}"

        def run() -> dict[str, Any]:
            with engine.begin() as conn:  # a transaction: the operation and its audit entry go together
                result = operation(conn, address, actor)
            return result if after_commit is None else after_commit(result)

        return JSONResponse(await run_in_threadpool(run), headers={"Cache-Control": "no-store"})

    @app.get(
        "/api/v1/privacy/subjects/{email}",
        tags=["Privacy"],
        summary="Everything held about an address, as JSON (GDPR access); audited",
    )
    async def export_route(email: str, request: Request) -> Response:
        return await on_subject(
            email,
            request,
            lambda conn, address, actor: export_subject(conn, vault, keyring, address, actor=actor),
        )

    @app.delete(
        "/api/v1/privacy/subjects/{email}",
        tags=["Privacy"],
        summary="Erase an address (GDPR erasure): delete, crypto-shred, keep a hashed suppression; audited",
    )
    async def erase_route(email: str, request: Request) -> Response:
        return await on_subject(
            email,
            request,
            lambda conn, address, actor: dict(
                erase_subject(conn, vault, keyring, address, actor=actor).as_dict()
            ),
            # Old row versions still on disk are reclaimed once the erasure has committed.
            lambda report: {**report, "vacuumed": vacuum_erased(engine)},
        )

    @app.get(
        "/api/v1/privacy/audit",
        tags=["Privacy"],
        summary="The audit trail, newest first (?action=, ?email= or ?subject=, ?since=, ?limit=)",
    )
    async def audit_route(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "privacy")
        if isinstance(api_key, Response):
            return api_key
        params = request.query_params
        try:
            limit = min(max(int(params.get("limit", "100") or 100), 1), _MAX_AUDIT)
            since = parse_timestamp(params["since"], "since") if params.get("since") else None
        except ValueError as exc:  # StatsParamError is one
            message = str(exc) if isinstance(exc, StatsParamError) else "limit must be an integer"
            return _error(400, message)
        subject = params.get("subject")
        if params.get("email"):
            address = valid_address(params["email"])
            if address is None:
                return _error(400, "email must be an email address")
            subject = vault.index(address)
        action = params.get("action") or None

        def load() -> list[AuditEntry]:
            with engine.connect() as conn:
                return list_audit(conn, action=action, subject=subject, since=since, limit=limit)

        data = [audit_json(entry) for entry in await run_in_threadpool(load)]
        return JSONResponse({"Count": len(data), "Data": data}, headers={"Cache-Control": "no-store"})
