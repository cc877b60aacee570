"""The ASGI application: Mailjet-compatible Send API v3.1, message status, sandbox outbox, health, metrics.

Every module of this package holds a module-level router; :func:`create_app` puts them together with the
one error handler (``_errors``), the one body limit (``_limits``) and the per-app state the routes'
dependencies read (the runtime, the authenticator).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response, Security
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from mailstack import __version__
from mailstack.runtime import Runtime
from mailstack.storage import ApiKeyRecord, get_message, list_events, list_outbox, reading
from mailstack.tracking import EventRecorder

from . import _automation, _consent, _dashboard, _privacy, _stats, _suppressions, _tracking, _webhooks
from ._accept import accept_send_request
from ._admission import add_admission
from ._auth import Authenticator, scope
from ._deps import JsonDep, RuntimeDep, id_path
from ._errors import ERROR_RESPONSES, ApiError, ApiErrorBody, error_responses, install_error_handler
from ._limits import BodyLimit
from ._openapi import SEND_REFUSED_SCHEMA, SEND_REQUEST_SCHEMA, SEND_RESPONSE_SCHEMA
from ._sendv31 import RequestError

__all__ = ["create_app", "router"]

HSTS = "max-age=63072000"  # two years, as the nginx role sends it

router = APIRouter(responses=ERROR_RESPONSES)
SendKey = Annotated[ApiKeyRecord, Security(scope("send"))]
ReadKey = Annotated[ApiKeyRecord, Security(scope("read"))]
MessageId = Annotated[int, id_path("The MessageID the Send API answered")]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.post(
    "/v3.1/send",
    tags=["Send API v3.1"],
    summary="Send messages (Mailjet Send API v3.1)",
    responses={
        200: {"content": {"application/json": {"schema": SEND_RESPONSE_SCHEMA}}},
        400: {
            "description": "The request, or one of its messages, is invalid: a Mailjet error, or the "
            "per-message results (the valid messages are sent)",
            "content": {"application/json": {"schema": SEND_REFUSED_SCHEMA}},
        },
        403: {
            "description": "A key without the send scope, or (AdvanceErrorHandling) messages from a "
            "sender domain this server holds no DKIM key for",
            "content": {"application/json": {"schema": SEND_REFUSED_SCHEMA}},
        },
        422: {"model": ApiErrorBody, "description": "An Idempotency-Key already used with another body"},
    },
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
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "A repeated request with the same key returns the first response; "
                "the mail goes out once.",
            }
        ],
    },
)
def send(request: Request, api_key: SendKey, body: JsonDep, runtime: RuntimeDep) -> Response:
    started = time.perf_counter()
    try:
        status_code, payload, replayed = accept_send_request(
            runtime,
            api_key,
            body.value,
            request.headers.get("idempotency-key"),
            hashlib.sha256(body.raw).hexdigest(),
        )
    except RequestError:
        runtime.metrics.rejected.inc()
        raise
    runtime.metrics.request_latency.labels("/v3.1/send").observe(time.perf_counter() - started)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(payload, status_code, headers)


@router.get(
    "/v3/REST/message/{message_id}",
    tags=["Messages"],
    summary="A message's status",
    responses=error_responses(404),
)
def message(message_id: MessageId, api_key: ReadKey, runtime: RuntimeDep) -> Response:
    with reading(runtime.engine) as conn:
        record = get_message(conn, message_id, api_key.id, vault=runtime.vault)
    if record is None:
        raise ApiError(404, f"Object not found: message {message_id}")
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
    return JSONResponse({"Count": 1, "Data": [data], "Total": 1})


@router.get(
    "/v3/REST/messagehistory/{message_id}",
    tags=["Messages"],
    summary="A message's events",
    responses=error_responses(404),
)
def history(message_id: MessageId, api_key: ReadKey, runtime: RuntimeDep) -> Response:
    with reading(runtime.engine) as conn:
        if get_message(conn, message_id, api_key.id, vault=runtime.vault) is None:
            raise ApiError(404, f"Object not found: message {message_id}")
        found = list_events(conn, message_id, vault=runtime.vault)
    data = [
        {
            "EventAt": int(at),
            "EventType": event_type,
            "State": detail.get("smtp_reply", ""),
            "Comment": json.dumps(detail, sort_keys=True) if detail else "",
        }
        for event_type, at, detail in found
    ]
    return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})


@router.get("/api/v1/outbox", tags=["Sandbox outbox"], summary="Mail kept instead of sent, newest first")
def outbox(
    api_key: ReadKey,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first")] = 50,
) -> Response:
    with reading(runtime.engine) as conn:
        items = list_outbox(conn, api_key_id=api_key.id, limit=limit, vault=runtime.vault)
    public_url = runtime.settings.public_url
    data = [
        {
            "ID": item.id,
            "MessageID": item.message_id,
            "To": item.rcpt_to,
            "ReturnPath": item.mail_from,
            "KeptAt": _iso(item.created_at),
            "Href": f"{public_url}/api/v1/outbox/{item.message_id}",
        }
        for item in items
    ]
    return JSONResponse({"Count": len(data), "Data": data})


@router.get(
    "/api/v1/outbox/{message_id}",
    tags=["Sandbox outbox"],
    summary="The raw message as it would have been sent",
    response_class=Response,
    responses={
        200: {"content": {"message/rfc822": {"schema": {"type": "string"}}}},
        **error_responses(404),
    },
)
def outbox_message(message_id: MessageId, api_key: ReadKey, runtime: RuntimeDep) -> Response:
    with reading(runtime.engine) as conn:
        items = list_outbox(
            conn, api_key_id=api_key.id, message_id=message_id, limit=1, with_data=True, vault=runtime.vault
        )
    if not items:
        raise ApiError(404, f"Object not found: outbox message {message_id}")
    return Response(items[0].data, media_type="message/rfc822")


operations = APIRouter(tags=["Operations"])


@operations.get(
    "/healthz",
    summary="Liveness and database reachability",
    responses={503: {"description": "The database is unreachable"}},
)
def healthz(runtime: RuntimeDep) -> Response:
    try:
        with reading(runtime.engine) as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means unhealthy
        return JSONResponse({"status": "unhealthy", "database": type(exc).__name__}, 503)
    return JSONResponse({"status": "ok", "version": __version__})


@operations.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
)
def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            # FastAPI documents its own 422 for every route with parameters; here they are 400s.
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    responses = operation.get("responses", {})
                    if responses.get("422", {}).get("description") == "Validation Error":
                        del responses["422"]
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return document


def create_app(runtime: Runtime, recorder: EventRecorder) -> FastAPI:
    """Build the application around a :class:`Runtime`; ``recorder`` takes the tracking events.

    The app starts no background service: the composition root (:mod:`mailstack.serve`) runs them.
    """
    app = FastAPI(
        title="mailstack",
        version=__version__,
        description="Self-hosted email sending: `POST /v3.1/send` matches Mailjet's Send API v3.1.",
    )
    app.state.runtime = runtime
    # One authenticator for every route: one cache of key records, one database read per key and 30 s.
    app.state.authenticator = Authenticator(runtime.engine)
    settings = runtime.settings
    install_error_handler(app)
    app.add_middleware(
        BodyLimit,
        default=settings.server.max_body_bytes,
        routes=[*_tracking.BODY_LIMITS, *_consent.BODY_LIMITS, *_dashboard.BODY_LIMITS],
    )
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

    _tracking.register_tracking(app, runtime, recorder)
    app.include_router(router)
    for module_router in (
        _tracking.router,
        _stats.router,
        _webhooks.router,
        _automation.router,
        _suppressions.router,
        _consent.router,
        _privacy.router,
    ):
        app.include_router(module_router)
    if settings.dashboard.enabled:
        _dashboard.register_dashboard(app, runtime)
        app.include_router(_dashboard.router)
    app.include_router(operations)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app
