"""Tracking routes: the open pixel, click redirects, the unsubscribe page and one-click POST, conversions.

The pixel and the redirect answer from the token alone: the event is handed to the
:class:`~mailstack.tracking.EventRecorder` queue and written in the background, so these endpoints stay
fast however busy the database is. A click token that does not verify never redirects anywhere.
"""

from __future__ import annotations

import hashlib
import html
import math
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response, Security
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import Connection, select

from mailstack.model import EventType
from mailstack.observability import get_logger
from mailstack.privacy import Vault
from mailstack.runtime import Runtime
from mailstack.storage import PURPOSE_RECIPIENT, ApiKeyRecord
from mailstack.storage.schema import messages
from mailstack.tokens import InvalidToken
from mailstack.tracking import Detector, EventRecorder, TrackedEvent, TrackingUrls, store_events

from ._auth import scope
from ._deps import MAX_ID, JsonDep, RuntimeDep
from ._errors import ERROR_RESPONSES, ApiError, error_responses
from ._unsubscribe import suppress_unsubscribed

__all__ = ["BODY_LIMITS", "register_tracking", "router"]

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
_MAX_FORM = 4096  # RFC 8058's body is "List-Unsubscribe=One-Click"; the page's form is as small
BODY_LIMITS = [("/unsubscribe/{token}", _MAX_FORM)]


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


@dataclass(frozen=True, slots=True)
class _Tracking:
    urls: TrackingUrls
    detector: Detector
    recorder: EventRecorder


def register_tracking(app: FastAPI, runtime: Runtime, recorder: EventRecorder) -> None:
    """The routes find the recorder (started and stopped by the lifecycle) and the token codec in the
    app's state."""
    settings = runtime.settings
    app.state.tracking = _Tracking(
        TrackingUrls(runtime.compose_settings.tokens, settings.public_url),
        Detector(settings.tracking.proxy_networks, settings.tracking.scanner_networks),
        recorder,
    )
    if settings.delivery.relay and not settings.server.public_url:
        # Real mail would carry links to this machine's listen address, which recipients cannot reach.
        log.warning(
            "tracking and unsubscribe links point at the listen address; set server.public_url",
            public_url=settings.public_url,
        )


def _tracking(request: Request) -> _Tracking:
    tracking: _Tracking = request.app.state.tracking
    return tracking


TrackingDep = Annotated[_Tracking, Depends(_tracking)]
router = APIRouter(tags=["Tracking"])


@router.get("/t/o/{token}", summary="Open pixel", include_in_schema=False)
async def open_pixel(token: str, request: Request, tracking: TrackingDep) -> Response:
    headers = {"Cache-Control": _NO_STORE, "Pragma": "no-cache"}
    try:
        message_id = tracking.urls.open_message(token)
    except InvalidToken:
        return Response(PIXEL, status_code=404, media_type="image/gif", headers=headers)
    agent, ip = _client(request)
    verdict = tracking.detector.open(agent, ip)
    detail: dict[str, Any] = {"ip": ip, "agent": agent, **verdict.to_detail()}
    tracking.recorder.submit(TrackedEvent(uuid.uuid4().hex, message_id, EventType.OPEN, time.time(), detail))
    return Response(PIXEL, media_type="image/gif", headers=headers)


@router.api_route("/t/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def click(token: str, request: Request, tracking: TrackingDep) -> Response:
    try:
        target = tracking.urls.click_target(token)
    except InvalidToken:
        return _invalid_link()
    agent, ip = _client(request)
    verdict = tracking.detector.click(agent, ip, request.method)
    detail: dict[str, Any] = {
        "url": target.url,
        "position": target.position,
        "ip": ip,
        "agent": agent,
        **verdict.to_detail(),
    }
    tracking.recorder.submit(
        TrackedEvent(uuid.uuid4().hex, target.message_id, EventType.CLICK, time.time(), detail)
    )
    # The target is the exact URL the MAC covers; no-referrer keeps the token out of its logs.
    return Response(
        status_code=302,
        headers={"Location": target.url, "Cache-Control": _NO_STORE, "Referrer-Policy": "no-referrer"},
    )


_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}


@router.get(
    "/unsubscribe/{token}",
    summary="Unsubscribe page (asks to confirm)",
    response_class=HTMLResponse,
    responses={200: _PAGE, 404: {"description": "Not a valid link", **_PAGE}},
)
async def unsubscribe_page(token: str, tracking: TrackingDep) -> Response:
    # A GET never unsubscribes: link scanners and previews follow links on their own.
    try:
        tracking.urls.unsubscribe_message(token)
    except InvalidToken:
        return _invalid_link()
    action = html.escape(f"/unsubscribe/{token}", quote=True)
    return _page(
        "Unsubscribe",
        "<h1>Unsubscribe</h1><p>Stop receiving these emails at this address?</p>"
        f'<form method=post action="{action}"><input type=hidden name=confirm value=yes>'
        "<button type=submit>Unsubscribe</button></form>",
    )


async def _small_body(request: Request) -> str:
    # Small: the body limit of this route (BODY_LIMITS) stops anything larger while it arrives.
    return (await request.body()).decode("utf-8", "replace")


@router.post(
    "/unsubscribe/{token}",
    summary="Unsubscribe: RFC 8058 one-click POST, or the page's confirmation",
    response_class=HTMLResponse,
    responses={
        200: {
            "content": {
                "text/html": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            }
        },
        404: {"description": "Not a valid link, or a message no longer known", **_PAGE},
        **error_responses(413),
    },
)
def unsubscribe(
    token: str,
    request: Request,
    body: Annotated[str, Depends(_small_body)],
    tracking: TrackingDep,
    runtime: RuntimeDep,
) -> Response:
    try:
        message_id = tracking.urls.unsubscribe_message(token)
    except InvalidToken:
        return _invalid_link()
    one_click = "List-Unsubscribe=One-Click" in body
    agent, ip = _client(request)
    with runtime.engine.begin() as conn:
        found = _recipient(conn, runtime.vault, message_id)
        if found is not None:
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
    if found is None:
        return _page("Unsubscribe", "<h1>This message is no longer known</h1>", 404)
    if one_click:
        # RFC 8058 clients only look at the status; no redirect, no page.
        return Response("Unsubscribed\n", media_type="text/plain", headers={"Cache-Control": _NO_STORE})
    return _page("Unsubscribed", "<h1>You are unsubscribed</h1><p>You will not get these emails again.</p>")


@router.post(
    "/api/v1/conversions",
    summary="Record a conversion (e.g. a purchase) for a message",
    status_code=201,
    responses={**ERROR_RESPONSES, **error_responses(404)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["MessageID", "Name"],
                        "additionalProperties": False,
                        "properties": {
                            "MessageID": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                            "Name": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": MAX_CONVERSION_NAME,
                                "description": "Printable characters",
                            },
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
def conversion(
    api_key: Annotated[ApiKeyRecord, Security(scope("send"))], body: JsonDep, runtime: RuntimeDep
) -> Response:
    problem, event = _parse_conversion(body.value)
    if problem:
        raise ApiError(400, problem)
    assert event is not None
    owner_key = api_key.id
    with runtime.engine.begin() as conn:
        found = _recipient(conn, runtime.vault, event.message_id)
        if found is not None and found.api_key_id == owner_key:
            # The caller's EventID makes a retried conversion count once (per API key).
            uid = (
                "conv:" + hashlib.sha256(f"{owner_key}:{event.uid}".encode()).hexdigest()[:40]
                if event.uid
                else uuid.uuid4().hex
            )
            stored = TrackedEvent(uid, event.message_id, EventType.CONVERSION, time.time(), event.detail)
            store_events(conn, [stored], vault=runtime.vault)
    if found is None or found.api_key_id != owner_key:
        raise ApiError(404, f"Object not found: message {event.message_id}")
    return JSONResponse({"Status": "success", "MessageID": event.message_id}, 201)


@dataclass(frozen=True, slots=True)
class _Conversion:
    message_id: int
    uid: str
    detail: dict[str, Any]


def _parse_conversion(body: object) -> tuple[str, _Conversion | None]:
    if not isinstance(body, dict):
        return "The body must be a JSON object.", None
    unknown = set(body) - {"MessageID", "Name", "Value", "EventID"}
    if unknown:
        return f"Unknown properties: {', '.join(sorted(unknown))}.", None
    message_id = body.get("MessageID")
    if not isinstance(message_id, int) or isinstance(message_id, bool) or not 0 < message_id <= MAX_ID:
        return "MessageID must be a positive integer (a MessageID the Send API answered).", None
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
