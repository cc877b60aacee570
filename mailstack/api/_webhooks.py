"""Webhook routes, Mailjet-compatible: ``/v3/REST/eventcallbackurl`` (list, create, show, delete), plus the
delivery log of an endpoint at ``/v3/REST/eventcallbackurl/{id}/deliveries``; the dispatcher runs with
the app.

Creating an endpoint answers with ``SigningSecret`` (hex), shown this once: receivers check the
``X-Mailstack-Signature`` header with it (see :func:`mailstack.webhooks.verify`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from mailstack.runtime import Runtime
from mailstack.storage.schema import webhook_endpoints
from mailstack.webhooks import (
    EVENT_TYPES,
    DestinationRefusedError,
    Dispatcher,
    check_destination,
    create_endpoint,
    delete_endpoint,
    get_endpoint,
    list_deliveries,
    list_endpoints,
)

from ._auth import Authenticator, authenticate_request
from ._lifespan import run_in_background

__all__ = ["register_webhooks"]

_FIELDS = {"EventType", "Url", "Version", "Status", "IsBackup"}


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"ErrorInfo": "", "ErrorMessage": message, "StatusCode": status}, status)


def _parse(body: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(body, dict):
        return "The body must be a JSON object.", {}
    unknown = set(body) - _FIELDS
    if unknown:
        return f"Unknown properties: {', '.join(sorted(unknown))}.", {}
    event_type = body.get("EventType")
    if event_type not in EVENT_TYPES:
        return f"EventType must be one of {', '.join(EVENT_TYPES)}.", {}
    url = body.get("Url")
    if not isinstance(url, str) or not url:
        return "Url is required.", {}
    version = body.get("Version", 1)
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if version not in (1, 2):
        return "Version must be 1 (one event per request) or 2 (grouped).", {}
    status = body.get("Status", "alive")
    if status not in ("alive", "dead"):
        return 'Status must be "alive" or "dead".', {}
    is_backup = body.get("IsBackup", False)
    if not isinstance(is_backup, bool):
        return "IsBackup must be true or false.", {}
    return "", {
        "event_type": event_type,
        "url": url,
        "version": version,
        "status": status,
        "is_backup": is_backup,
    }


def register_webhooks(app: FastAPI, runtime: Runtime, auth: Authenticator) -> Dispatcher:
    """Add the webhook routes; the dispatcher thread starts and stops with the app."""
    settings = runtime.settings
    dispatcher = Dispatcher(
        runtime.engine,
        runtime.keyring,
        settings.webhooks,
        sent_is_delivery=settings.sent_is_delivery,
        vault=runtime.vault,
    )
    # A delivery in flight may take its whole timeout before the thread sees the stop.
    run_in_background(
        app,
        dispatcher.run,
        name="webhooks",
        join_seconds=settings.webhooks.timeout_seconds + 10,
        prepare=dispatcher.start,
    )
    app.state.webhooks = dispatcher

    @app.get("/v3/REST/eventcallbackurl", tags=["Webhooks"], summary="Your webhook endpoints")
    async def list_route(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "webhooks")
        if isinstance(api_key, Response):
            return api_key

        def load() -> list[dict[str, Any]]:
            with runtime.engine.connect() as conn:
                return [endpoint.to_json() for endpoint in list_endpoints(conn, api_key.id)]

        data = await run_in_threadpool(load)
        return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})

    @app.post(
        "/v3/REST/eventcallbackurl",
        tags=["Webhooks"],
        summary="Add a webhook endpoint for one event type (Mailjet's Event API)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["EventType", "Url"],
                            "properties": {
                                "EventType": {"type": "string", "enum": list(EVENT_TYPES)},
                                "Url": {"type": "string", "format": "uri"},
                                "Version": {"type": "integer", "enum": [1, 2]},
                                "Status": {"type": "string", "enum": ["alive", "dead"]},
                                "IsBackup": {"type": "boolean"},
                            },
                        }
                    }
                },
            }
        },
    )
    async def create_route(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "webhooks")
        if isinstance(api_key, Response):
            return api_key
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _error("The body must be a JSON object.")
        problem, fields = _parse(body)
        if problem:
            return _error(problem)

        def create() -> tuple[str, dict[str, Any]]:
            try:
                check_destination(fields["url"], settings.webhooks.allow_networks)
            except DestinationRefusedError as exc:
                return f"Url refused: {exc}.", {}
            with runtime.engine.begin() as conn:
                taken = conn.execute(
                    select(webhook_endpoints.c.id).where(
                        webhook_endpoints.c.api_key_id == api_key.id,
                        webhook_endpoints.c.event_type == fields["event_type"],
                        webhook_endpoints.c.is_backup.is_(fields["is_backup"]),
                    )
                ).first()
                if taken is not None:
                    return (
                        f"A callback URL for {fields['event_type']} events already exists (ID {taken.id}).",
                        {},
                    )
                record, secret = create_endpoint(conn, runtime.keyring, api_key_id=api_key.id, **fields)
            return "", {**record.to_json(), "SigningSecret": secret}

        problem, data = await run_in_threadpool(create)
        if problem:
            return _error(problem)
        return JSONResponse({"Count": 1, "Data": [data], "Total": 1}, 201)

    @app.get("/v3/REST/eventcallbackurl/{endpoint_id:int}", tags=["Webhooks"], summary="One endpoint")
    async def show_route(endpoint_id: int, request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "webhooks")
        if isinstance(api_key, Response):
            return api_key

        def load() -> dict[str, Any] | None:
            with runtime.engine.connect() as conn:
                record = get_endpoint(conn, api_key.id, endpoint_id)
            return None if record is None else record.to_json()

        data = await run_in_threadpool(load)
        if data is None:
            return _error(f"Object not found: eventcallbackurl {endpoint_id}", 404)
        return JSONResponse({"Count": 1, "Data": [data], "Total": 1})

    @app.delete(
        "/v3/REST/eventcallbackurl/{endpoint_id:int}", tags=["Webhooks"], summary="Remove an endpoint"
    )
    async def delete_route(endpoint_id: int, request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "webhooks")
        if isinstance(api_key, Response):
            return api_key

        def remove() -> bool:
            with runtime.engine.begin() as conn:
                return delete_endpoint(conn, api_key.id, endpoint_id)

        if not await run_in_threadpool(remove):
            return _error(f"Object not found: eventcallbackurl {endpoint_id}", 404)
        return Response(status_code=204)

    @app.get(
        "/v3/REST/eventcallbackurl/{endpoint_id:int}/deliveries",
        tags=["Webhooks"],
        summary="The delivery log of an endpoint, newest first",
    )
    async def deliveries_route(endpoint_id: int, request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "webhooks")
        if isinstance(api_key, Response):
            return api_key
        limit_text = request.query_params.get("Limit", request.query_params.get("limit", "50"))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            return _error("Limit must be a number from 1 to 1000.")

        def load() -> list[dict[str, Any]] | None:
            with runtime.engine.connect() as conn:
                if get_endpoint(conn, api_key.id, endpoint_id) is None:
                    return None
                return [d.to_json() for d in list_deliveries(conn, endpoint_id, limit=int(limit_text))]

        data = await run_in_threadpool(load)
        if data is None:
            return _error(f"Object not found: eventcallbackurl {endpoint_id}", 404)
        return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})

    return dispatcher
