"""The dashboard at ``/dashboard``: a login (argon2 password hashes, signed session cookie) and one page
whose data comes from ``/dashboard/api/...``.

The session cookie is HttpOnly and SameSite=Strict (Secure behind https), which with the Origin check on
the two POST forms (login, logout) keeps other sites from acting for a signed-in user; the JSON routes
only read. Sign-in attempts are throttled per client address and per user name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy import Connection

from mailstack.dashboard import (
    APP_CSS,
    APP_JS,
    CSP,
    FAVICON,
    LoginThrottle,
    Sessions,
    UserRecord,
    api_key_list,
    authenticate,
    dashboard_page,
    login_page,
    message_timeline,
    overview,
    search_messages,
    suppression_list,
)
from mailstack.runtime import Runtime
from mailstack.storage import reading
from mailstack.tokens import TokenSigner

from ._deps import MAX_ID, RuntimeDep, id_path
from ._errors import ApiError

__all__ = ["BODY_LIMITS", "COOKIE", "register_dashboard", "router"]

COOKIE = "mailstack_session"
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_MAX_FORM = 8192
BODY_LIMITS = [("/dashboard/login", _MAX_FORM), ("/dashboard/logout", _MAX_FORM)]


@dataclass(frozen=True, slots=True)
class _Dashboard:
    sessions: Sessions
    throttle: LoginThrottle
    secure: bool


def register_dashboard(app: FastAPI, runtime: Runtime) -> None:
    """What the dashboard's routes share: sessions, the login throttle (include :data:`router` too)."""
    settings = runtime.settings
    app.state.dashboard = _Dashboard(
        Sessions(
            TokenSigner(runtime.keyring.derive("dashboard-session")), settings.dashboard.session_hours * 3600
        ),
        LoginThrottle(runtime.engine, runtime.keyring.derive("login-throttle")),
        settings.public_url.startswith("https://"),
    )


def _dashboard(request: Request) -> _Dashboard:
    dashboard: _Dashboard = request.app.state.dashboard
    return dashboard


DashboardDep = Annotated[_Dashboard, Depends(_dashboard)]
router = APIRouter(include_in_schema=False)


def _page(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status, headers=_HEADERS)


def _same_origin(request: Request, public_url: str) -> bool:
    # Browsers send Origin on form POSTs; a foreign one means another site is submitting the form.
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    parsed = urlsplit(origin)
    public = urlsplit(public_url)
    # Exact host comparison: a prefix test would let https://<public host>.evil.example through.
    return parsed.netloc == request.headers.get("host", "") or (parsed.scheme, parsed.netloc) == (
        public.scheme,
        public.netloc,
    )


def _current_user(request: Request, runtime: Runtime, dashboard: _Dashboard) -> UserRecord | None:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    with reading(runtime.engine) as conn:
        return dashboard.sessions.user(conn, cookie)


async def _form(request: Request) -> dict[str, list[str]]:
    # Small: the body limit of this route (BODY_LIMITS) stops anything larger while it arrives.
    try:
        return parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:  # more fields than the login form has
        return {}


@router.get("/dashboard/login")
async def login_form() -> Response:
    return _page(login_page())


@router.post("/dashboard/login")
def login(
    request: Request,
    form: Annotated[dict[str, list[str]], Depends(_form)],
    runtime: RuntimeDep,
    dashboard: DashboardDep,
) -> Response:
    if not _same_origin(request, runtime.settings.public_url):
        return _page(login_page("This form must be sent from the dashboard itself."), 403)
    client = request.client.host if request.client is not None else ""
    username = form.get("username", [""])[0]
    password = form.get("password", [""])[0]
    throttle = dashboard.throttle
    # The attempt is counted before the password is checked: simultaneous guesses cannot all pass.
    if not throttle.take(client, username):
        return _page(login_page("Too many failed sign-ins; try again in a few minutes."), 429)
    with runtime.engine.begin() as conn:
        user = authenticate(conn, username, password)
    if user is None:
        return _page(login_page("Wrong user name or password."), 401)
    throttle.succeeded(client, username)
    response = RedirectResponse("/dashboard", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE,
        dashboard.sessions.issue(user),
        max_age=int(runtime.settings.dashboard.session_hours * 3600),
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=dashboard.secure,
    )
    return response


@router.post("/dashboard/logout")
async def logout(request: Request, runtime: RuntimeDep, dashboard: DashboardDep) -> Response:
    if not _same_origin(request, runtime.settings.public_url):
        return _page(login_page(), 403)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(
        COOKIE, path="/dashboard", httponly=True, samesite="strict", secure=dashboard.secure
    )
    return response


@router.get("/dashboard")
def dashboard_route(request: Request, runtime: RuntimeDep, dashboard: DashboardDep) -> Response:
    user = _current_user(request, runtime, dashboard)
    if user is None:
        return RedirectResponse("/dashboard/login", status_code=303)
    return _page(dashboard_page(user.username))


@router.get("/dashboard/app.js")
async def script() -> Response:
    return Response(APP_JS, media_type="text/javascript", headers={"X-Content-Type-Options": "nosniff"})


@router.get("/dashboard/favicon.svg")
async def favicon() -> Response:
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@router.get("/dashboard/app.css")
async def style() -> Response:
    return Response(APP_CSS, media_type="text/css", headers={"X-Content-Type-Options": "nosniff"})


_Loader = Callable[[Connection, int | None], Any]


def _signed_in(request: Request, runtime: RuntimeDep, dashboard: DashboardDep) -> UserRecord:
    user = _current_user(request, runtime, dashboard)
    if user is None:
        raise ApiError(401, "Sign in first.")
    return user


SignedIn = Annotated[UserRecord, Depends(_signed_in)]
KeyParam = Annotated[int | None, Query(alias="key", ge=1, le=MAX_ID, description="An API key ID")]


def _data(runtime: Runtime, key: int | None, load: _Loader) -> Response:
    with reading(runtime.engine) as conn:
        result = load(conn, key)
    if result is None:
        raise ApiError(404, "Not found.")
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


def _key(conn: Connection, key: int | None) -> int | None:
    keys = [k["ID"] for k in api_key_list(conn)]
    if key is None:
        return keys[0] if keys else None
    return key if key in keys else None


@router.get("/dashboard/api/keys")
def keys(_user: SignedIn, runtime: RuntimeDep, key: KeyParam = None) -> Response:
    return _data(runtime, key, lambda conn, _key_id: {"Data": api_key_list(conn)})


@router.get("/dashboard/api/overview")
def overview_route(
    _user: SignedIn,
    runtime: RuntimeDep,
    key: KeyParam = None,
    days: Annotated[int, Query(ge=1, le=MAX_ID)] = 30,
) -> Response:
    def load(conn: Connection, key_id: int | None) -> Any:
        api_key_id = _key(conn, key_id)
        if api_key_id is None:
            return None
        return overview(conn, api_key_id, days=days, now=time.time(), store=runtime.store)

    return _data(runtime, key, load)


@router.get("/dashboard/api/messages")
def messages_route(
    _user: SignedIn,
    runtime: RuntimeDep,
    key: KeyParam = None,
    query: Annotated[str, Query(alias="q", max_length=1000)] = "",
) -> Response:
    def load(conn: Connection, key_id: int | None) -> Any:
        api_key_id = _key(conn, key_id)
        return (
            None
            if api_key_id is None
            else {"Data": search_messages(conn, api_key_id, query, store=runtime.store)}
        )

    return _data(runtime, key, load)


@router.get("/dashboard/api/messages/{message_id}/events")
def timeline_route(
    message_id: Annotated[int, id_path("A MessageID")],
    _user: SignedIn,
    runtime: RuntimeDep,
    key: KeyParam = None,
) -> Response:
    def load(conn: Connection, key_id: int | None) -> Any:
        api_key_id = _key(conn, key_id)
        found = (
            None
            if api_key_id is None
            else message_timeline(conn, api_key_id, message_id, store=runtime.store)
        )
        return None if found is None else {"Data": found}

    return _data(runtime, key, load)


@router.get("/dashboard/api/suppressions")
def suppressions_route(
    _user: SignedIn,
    runtime: RuntimeDep,
    key: KeyParam = None,
    query: Annotated[str, Query(alias="q", max_length=1000)] = "",
) -> Response:
    return _data(
        runtime, key, lambda conn, _key_id: {"Data": suppression_list(conn, query, store=runtime.store)}
    )
