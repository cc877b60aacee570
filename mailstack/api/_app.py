"""The ASGI application: Mailjet-compatible Send API v3.1, message status, sandbox outbox, health, metrics."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from mailstack import __version__
from mailstack.runtime import Runtime
from mailstack.storage import (
    ApiKeyRecord,
    get_message,
    list_events,
    list_outbox,
)

from ._accept import accept_send_request, malformed_json_error
from ._admission import add_admission
from ._auth import Authenticator, authenticate_request
from ._automation import register_automation
from ._consent import register_consent
from ._dashboard import register_dashboard
from ._openapi import SEND_REQUEST_SCHEMA
from ._privacy import register_privacy
from ._sendv31 import RequestError
from ._stats import register_stats
from ._suppressions import register_suppressions
from ._tracking import register_tracking
from ._webhooks import register_webhooks

_Handler = Callable[[Request, ApiKeyRecord], Awaitable[Response]]
HSTS = "max-age=63072000"  # two years, as the nginx role sends it


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status_code, headers=headers)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found(what: str) -> JSONResponse:
    return _json({"ErrorInfo": "", "ErrorMessage": f"Object not found: {what}", "StatusCode": 404}, 404)


def create_app(runtime: Runtime) -> FastAPI:
    """Build the application around a running :class:`Runtime`."""
    app = FastAPI(
        title="mailstack",
        version=__version__,
        description="Self-hosted email sending: `POST /v3.1/send` matches Mailjet's Send API v3.1.",
    )
    # One authenticator for every route: one cache of key records, one database read per key and 30 s.
    auth = Authenticator(runtime.engine)
    settings = runtime.settings
    add_admission(app, settings.server, runtime.metrics.registry)  # 429 beyond [server] limits
    if settings.public_url.startswith("https://"):
        # Served over https (directly or behind a TLS proxy): browsers must never fall back to http,
        # where a session cookie or an API secret could be read or a page altered on the way.

        @app.middleware("http")
        async def strict_transport(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            response = await call_next(request)
            response.headers.setdefault("Strict-Transport-Security", HSTS)
            return response

    async def authenticated(request: Request, handler: _Handler, scope: str = "read") -> Response:
        record = await authenticate_request(auth, request, scope)
        if isinstance(record, Response):
            return record
        return await handler(request, record)

    async def read_body(request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.server.max_body_bytes:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.server.max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def send(request: Request, api_key: ApiKeyRecord) -> Response:
        started = time.perf_counter()
        raw = await read_body(request)
        if raw is None:
            limit = settings.server.max_body_bytes
            return _json({"StatusCode": 413, "ErrorMessage": f"Request body larger than {limit} bytes."}, 413)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            error = malformed_json_error()
            return _json(error.payload, error.status_code)
        idempotency_key = request.headers.get("idempotency-key")
        try:
            status_code, payload, replayed = await run_in_threadpool(
                accept_send_request,
                runtime,
                api_key,
                body,
                idempotency_key,
                hashlib.sha256(raw).hexdigest(),
            )
        except RequestError as error:
            runtime.metrics.rejected.inc()
            return _json(error.payload, error.status_code)
        runtime.metrics.request_latency.labels("/v3.1/send").observe(time.perf_counter() - started)
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return _json(payload, status_code, headers)

    @app.post(
        "/v3.1/send",
        tags=["Send API v3.1"],
        summary="Send messages (Mailjet Send API v3.1)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SEND_REQUEST_SCHEMA}},
            },
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 255},
                    "description": "A repeated request with the same key returns the first response; "
                    "the mail goes out once.",
                }
            ],
        },
    )
    async def send_route(request: Request) -> Response:
        return await authenticated(request, send, "send")

    async def message(request: Request, api_key: ApiKeyRecord) -> Response:
        message_id = int(request.path_params["message_id"])

        def load() -> Any:
            with runtime.engine.connect() as conn:
                return get_message(conn, message_id, api_key.id, vault=runtime.vault)

        record = await run_in_threadpool(load)
        if record is None:
            return _not_found(f"message {message_id}")
        data = {
            "ID": record.id,
            "UUID": record.uuid,
            "ArrivedAt": _iso(record.created_at),
            "AttemptCount": record.attempts,
            "AttachmentCount": record.attachment_count,
            "CampaignAlias": record.campaign,
            "CustomID": record.custom_id,
            "Destination": record.recipient,
            "Sender": record.sender,
            "RecipientType": record.kind,
            "Status": record.status,
            "StatusUpdatedAt": _iso(record.updated_at),
            "Subject": record.subject,
            "MessageIDHeader": record.message_id_header or "",
            "LastSMTPReply": record.last_reply or "",
        }
        return _json({"Count": 1, "Data": [data], "Total": 1})

    @app.get("/v3/REST/message/{message_id:int}", tags=["Messages"], summary="A message's status")
    async def message_route(request: Request) -> Response:
        return await authenticated(request, message)

    async def history(request: Request, api_key: ApiKeyRecord) -> Response:
        message_id = int(request.path_params["message_id"])

        def load() -> Any:
            with runtime.engine.connect() as conn:
                if get_message(conn, message_id, api_key.id, vault=runtime.vault) is None:
                    return None
                return list_events(conn, message_id, vault=runtime.vault)

        found = await run_in_threadpool(load)
        if found is None:
            return _not_found(f"message {message_id}")
        data = [
            {
                "EventAt": int(at),
                "EventType": event_type,
                "State": detail.get("smtp_reply", ""),
                "Comment": json.dumps(detail, sort_keys=True) if detail else "",
            }
            for event_type, at, detail in found
        ]
        return _json({"Count": len(data), "Data": data, "Total": len(data)})

    @app.get("/v3/REST/messagehistory/{message_id:int}", tags=["Messages"], summary="A message's events")
    async def history_route(request: Request) -> Response:
        return await authenticated(request, history)

    async def outbox(request: Request, api_key: ApiKeyRecord) -> Response:
        limit = min(max(int(request.query_params.get("limit", "50") or 50), 1), 1000)

        def load() -> Any:
            with runtime.engine.connect() as conn:
                return list_outbox(conn, api_key_id=api_key.id, limit=limit, vault=runtime.vault)

        items = await run_in_threadpool(load)
        data = [
            {
                "ID": item.id,
                "MessageID": item.message_id,
                "To": item.rcpt_to,
                "ReturnPath": item.mail_from,
                "KeptAt": _iso(item.created_at),
                "Href": f"{settings.public_url}/api/v1/outbox/{item.message_id}",
            }
            for item in items
        ]
        return _json({"Count": len(data), "Data": data})

    @app.get("/api/v1/outbox", tags=["Sandbox outbox"], summary="Mail kept instead of sent, newest first")
    async def outbox_route(request: Request) -> Response:
        return await authenticated(request, outbox)

    async def outbox_message(request: Request, api_key: ApiKeyRecord) -> Response:
        message_id = int(request.path_params["message_id"])

        def load() -> Any:
            with runtime.engine.connect() as conn:
                return list_outbox(
                    conn,
                    api_key_id=api_key.id,
                    message_id=message_id,
                    limit=1,
                    with_data=True,
                    vault=runtime.vault,
                )

        items = await run_in_threadpool(load)
        if not items:
            return _not_found(f"outbox message {message_id}")
        return Response(items[0].data, media_type="message/rfc822")

    @app.get(
        "/api/v1/outbox/{message_id:int}",
        tags=["Sandbox outbox"],
        summary="The raw message as it would have been sent",
    )
    async def outbox_message_route(request: Request) -> Response:
        return await authenticated(request, outbox_message)

    register_tracking(app, runtime, auth)
    register_stats(app, runtime, auth)
    register_webhooks(app, runtime, auth)
    register_automation(app, runtime, auth)
    register_dashboard(app, runtime)
    register_suppressions(app, runtime, auth)
    register_consent(app, runtime, auth)
    register_privacy(app, runtime, auth)

    @app.get("/healthz", tags=["Operations"], summary="Liveness and database reachability")
    async def healthz() -> Response:
        def check() -> None:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(check)
        except Exception as exc:  # any database failure means unhealthy
            return _json({"status": "unhealthy", "database": type(exc).__name__}, 503)
        return _json({"status": "ok", "version": __version__})

    @app.get("/metrics", tags=["Operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        data = await run_in_threadpool(generate_latest, runtime.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return app
