"""Tracking routes: the open pixel, click redirects, the unsubscribe page and one-click POST, conversions.

The pixel and the redirect answer from the token alone: the event is handed to the
:class:`~mailstack.tracking.EventRecorder` queue and written in the background, so these endpoints stay
fast however busy the database is. A click token that does not verify never redirects anywhere.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Connection, select

from mailstack.model import EventType
from mailstack.observability import get_logger
from mailstack.privacy import Vault
from mailstack.runtime import Runtime
from mailstack.storage import PURPOSE_RECIPIENT
from mailstack.storage.schema import messages
from mailstack.tokens import InvalidToken
from mailstack.tracking import Detector, EventRecorder, TrackedEvent, TrackingUrls, store_events

from ._auth import Authenticator, authenticate_request
from ._lifespan import on_lifespan
from ._unsubscribe import suppress_unsubscribed

__all__ = ["register_tracking"]

log = get_logger("mailstack.tracking")

# The smallest transparent GIF (43 bytes).
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
_NO_STORE = "no-store, no-cache, must-revalidate, private, max-age=0"
_PAGE_HEADERS = {
    "Cache-Control": _NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_MAX_AGENT = 512
MAX_CONVERSION_NAME = 100


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:34em;"
        "margin:4em auto;padding:0 1em;color:#222}button{font-size:1em;padding:.6em 1.4em;"
        "border:0;border-radius:4px;background:#1a73e8;color:#fff;cursor:pointer}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_PAGE_HEADERS)


def _invalid_link() -> HTMLResponse:
    return _page(
        "Invalid link",
        "<h1>This link is not valid</h1><p>It may have been altered or copied incompletely.</p>",
        404,
    )


def _client(request: Request) -> tuple[str, str]:
    agent = request.headers.get("user-agent", "")[:_MAX_AGENT]
    ip = request.client.host if request.client is not None else ""
    return agent, ip


@dataclass(frozen=True, slots=True)
class _Recipient:
    message_id: int
    api_key_id: int
    recipient: str
    sender: str


def _recipient(conn: Connection, vault: Vault, message_id: int) -> _Recipient | None:
    row = conn.execute(
        select(messages.c.id, messages.c.api_key_id, messages.c.recipient, messages.c.sender).where(
            messages.c.id == message_id
        )
    ).first()
    if row is None:
        return None
    email = vault.open_optional(conn, row.recipient, purpose=PURPOSE_RECIPIENT)
    if email is None:
        return None  # its recipient was erased
    return _Recipient(row.id, row.api_key_id, email.decode(), row.sender)


def register_tracking(app: FastAPI, runtime: Runtime, auth: Authenticator) -> EventRecorder:
    """Add the tracking routes to ``app``; the recorder starts and stops with the app."""
    settings = runtime.settings
    urls = TrackingUrls(runtime.compose_settings.tokens, settings.public_url)
    detector = Detector(settings.tracking.proxy_networks, settings.tracking.scanner_networks)
    recorder = EventRecorder(
        runtime.engine,
        capacity=settings.tracking.queue_size,
        batch_size=settings.tracking.batch_size,
        flush_seconds=settings.tracking.flush_seconds,
        spool_dir=settings.data_dir / "spool",
        vault=runtime.vault,
    )
    on_lifespan(app, recorder.start, recorder.stop)
    app.state.recorder = recorder
    if settings.delivery.relay and not settings.server.public_url:
        # Real mail would carry links to this machine's listen address, which recipients cannot reach.
        log.warning(
            "tracking and unsubscribe links point at the listen address; set server.public_url",
            public_url=settings.public_url,
        )

    @app.get("/t/o/{token}", tags=["Tracking"], summary="Open pixel", include_in_schema=False)
    async def open_pixel(token: str, request: Request) -> Response:
        headers = {"Cache-Control": _NO_STORE, "Pragma": "no-cache"}
        try:
            message_id = urls.open_message(token)
        except InvalidToken:
            return Response(PIXEL, status_code=404, media_type="image/gif", headers=headers)
        agent, ip = _client(request)
        verdict = detector.open(agent, ip)
        detail: dict[str, Any] = {"ip": ip, "agent": agent, **verdict.to_detail()}
        recorder.submit(TrackedEvent(uuid.uuid4().hex, message_id, EventType.OPEN, time.time(), detail))
        return Response(PIXEL, media_type="image/gif", headers=headers)

    async def click(token: str, request: Request) -> Response:
        try:
            target = urls.click_target(token)
        except InvalidToken:
            return _invalid_link()
        agent, ip = _client(request)
        verdict = detector.click(agent, ip, request.method)
        detail: dict[str, Any] = {
            "url": target.url,
            "position": target.position,
            "ip": ip,
            "agent": agent,
            **verdict.to_detail(),
        }
        recorder.submit(
            TrackedEvent(uuid.uuid4().hex, target.message_id, EventType.CLICK, time.time(), detail)
        )
        # The target is the exact URL the MAC covers; no-referrer keeps the token out of its logs.
        return Response(
            status_code=302,
            headers={"Location": target.url, "Cache-Control": _NO_STORE, "Referrer-Policy": "no-referrer"},
        )

    app.add_api_route(
        "/t/c/{token}", click, methods=["GET", "HEAD"], tags=["Tracking"], include_in_schema=False
    )

    @app.get("/unsubscribe/{token}", tags=["Tracking"], summary="Unsubscribe page (asks to confirm)")
    async def unsubscribe_page(token: str) -> Response:
        # A GET never unsubscribes: link scanners and previews follow links on their own.
        try:
            urls.unsubscribe_message(token)
        except InvalidToken:
            return _invalid_link()
        action = html.escape(f"/unsubscribe/{token}", quote=True)
        return _page(
            "Unsubscribe",
            "<h1>Unsubscribe</h1><p>Stop receiving these emails at this address?</p>"
            f'<form method=post action="{action}"><input type=hidden name=confirm value=yes>'
            "<button type=submit>Unsubscribe</button></form>",
        )

    @app.post(
        "/unsubscribe/{token}",
        tags=["Tracking"],
        summary="Unsubscribe: RFC 8058 one-click POST, or the page's confirmation",
    )
    async def unsubscribe(token: str, request: Request) -> Response:
        try:
            message_id = urls.unsubscribe_message(token)
        except InvalidToken:
            return _invalid_link()
        body = (await request.body())[:4096].decode("utf-8", "replace")
        one_click = "List-Unsubscribe=One-Click" in body
        agent, ip = _client(request)

        def record() -> bool:
            with runtime.engine.begin() as conn:
                found = _recipient(conn, runtime.vault, message_id)
                if found is None:
                    return False
                suppress_unsubscribed(
                    conn,
                    message_id=message_id,
                    email=found.recipient,
                    sender=found.sender,
                    method="one-click" if one_click else "page",
                    ip=ip,
                    agent=agent,
                    now=time.time(),
                    vault=runtime.vault,
                )
            return True

        if not await run_in_threadpool(record):
            return _page("Unsubscribe", "<h1>This message is no longer known</h1>", 404)
        if one_click:
            # RFC 8058 clients only look at the status; no redirect, no page.
            return Response("Unsubscribed\n", media_type="text/plain", headers={"Cache-Control": _NO_STORE})
        return _page(
            "Unsubscribed", "<h1>You are unsubscribed</h1><p>You will not get these emails again.</p>"
        )

    @app.post(
        "/api/v1/conversions",
        tags=["Tracking"],
        summary="Record a conversion (e.g. a purchase) for a message",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["MessageID", "Name"],
                            "properties": {
                                "MessageID": {"type": "integer"},
                                "Name": {"type": "string", "maxLength": MAX_CONVERSION_NAME},
                                "Value": {"type": "number"},
                                "EventID": {
                                    "type": "string",
                                    "maxLength": 40,
                                    "description": "Your id for this conversion: a retry with the same "
                                    "EventID is counted once.",
                                },
                            },
                        }
                    }
                },
            }
        },
    )
    async def conversion(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "send")
        if isinstance(api_key, Response):
            return api_key
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _bad_request("The body must be a JSON object.")
        problem, event = _parse_conversion(body)
        if problem:
            return _bad_request(problem)
        assert event is not None
        owner_key = api_key.id

        def record() -> bool:
            with runtime.engine.begin() as conn:
                found = _recipient(conn, runtime.vault, event.message_id)
                if found is None or found.api_key_id != owner_key:
                    return False
                # The caller's EventID makes a retried conversion count once (per API key).
                uid = (
                    "conv:" + hashlib.sha256(f"{owner_key}:{event.uid}".encode()).hexdigest()[:40]
                    if event.uid
                    else uuid.uuid4().hex
                )
                stored = TrackedEvent(uid, event.message_id, EventType.CONVERSION, time.time(), event.detail)
                store_events(conn, [stored], vault=runtime.vault)
            return True

        if not await run_in_threadpool(record):
            return JSONResponse(
                {"ErrorMessage": f"Object not found: message {event.message_id}", "StatusCode": 404}, 404
            )
        return JSONResponse({"Status": "success", "MessageID": event.message_id}, 201)

    return recorder


@dataclass(frozen=True, slots=True)
class _Conversion:
    message_id: int
    uid: str
    detail: dict[str, Any]


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"ErrorMessage": message, "StatusCode": 400}, 400)


def _parse_conversion(body: object) -> tuple[str, _Conversion | None]:
    if not isinstance(body, dict):
        return "The body must be a JSON object.", None
    unknown = set(body) - {"MessageID", "Name", "Value", "EventID"}
    if unknown:
        return f"Unknown properties: {', '.join(sorted(unknown))}.", None
    message_id = body.get("MessageID")
    if not isinstance(message_id, int) or isinstance(message_id, bool) or message_id <= 0:
        return "MessageID must be a positive integer.", None
    name = body.get("Name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_CONVERSION_NAME or not name.isprintable():
        return f"Name must be 1-{MAX_CONVERSION_NAME} printable characters.", None
    detail: dict[str, Any] = {"name": name}
    if "Value" in body:
        value = body["Value"]
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            return "Value must be a number.", None
        detail["value"] = value
    event_id = body.get("EventID", "")
    if not isinstance(event_id, str) or len(event_id) > 40 or not event_id.isprintable():
        return "EventID must be at most 40 printable characters.", None
    return "", _Conversion(message_id, event_id, detail)
