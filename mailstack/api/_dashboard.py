"""The dashboard at ``/dashboard``: a login (argon2 password hashes, signed session cookie) and one page
whose data comes from ``/dashboard/api/...``.

The session cookie is HttpOnly and SameSite=Strict (Secure behind https), which with the Origin check on
the two POST forms (login, logout) keeps other sites from acting for a signed-in user; the JSON routes
only read. Failed logins are throttled per client address.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

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
from mailstack.service import Runtime
from mailstack.tokens import TokenSigner

__all__ = ["COOKIE", "register_dashboard"]

COOKIE = "mailstack_session"
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_MAX_FORM = 8192


def register_dashboard(app: FastAPI, runtime: Runtime) -> None:
    """Add the dashboard routes (unless ``dashboard.enabled`` is false)."""
    settings = runtime.settings
    if not settings.dashboard.enabled:
        return
    sessions = Sessions(
        TokenSigner(runtime.keyring.derive("dashboard-session")), settings.dashboard.session_hours * 3600
    )
    throttle = LoginThrottle(runtime.engine, runtime.keyring.derive("login-throttle"))
    secure = settings.public_url.startswith("https://")

    def page(content: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(content, status_code=status, headers=_HEADERS)

    def same_origin(request: Request) -> bool:
        # Browsers send Origin on form POSTs; a foreign one means another site is submitting the form.
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or origin == "null":
            return origin is None
        parsed = urlsplit(origin)
        public = urlsplit(settings.public_url)
        # Exact host comparison: a prefix test would let https://<public host>.evil.example through.
        return parsed.netloc == request.headers.get("host", "") or (parsed.scheme, parsed.netloc) == (
            public.scheme,
            public.netloc,
        )

    async def current_user(request: Request) -> UserRecord | None:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None

        def load() -> UserRecord | None:
            with runtime.engine.connect() as conn:
                return sessions.user(conn, cookie)

        return await run_in_threadpool(load)

    @app.get("/dashboard/login", include_in_schema=False)
    async def login_form() -> Response:
        return page(login_page())

    @app.post("/dashboard/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not same_origin(request):
            return page(login_page("This form must be sent from the dashboard itself."), 403)
        client = request.client.host if request.client is not None else ""
        raw = (await request.body())[:_MAX_FORM].decode("utf-8", "replace")
        form = parse_qs(raw, max_num_fields=10)
        username = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        if not await run_in_threadpool(throttle.allowed, client, username):
            return page(login_page("Too many failed sign-ins; try again in a few minutes."), 429)

        def check() -> UserRecord | None:
            with runtime.engine.begin() as conn:
                return authenticate(conn, username, password)

        user = await run_in_threadpool(check)
        if user is None:
            await run_in_threadpool(throttle.failed, client, username)
            return page(login_page("Wrong user name or password."), 401)
        await run_in_threadpool(throttle.succeeded, client, username)
        response = RedirectResponse("/dashboard", status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            COOKIE,
            sessions.issue(user),
            max_age=int(settings.dashboard.session_hours * 3600),
            path="/dashboard",
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        return response

    @app.post("/dashboard/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return page(login_page(), 403)
        response = RedirectResponse("/dashboard/login", status_code=303)
        response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict", secure=secure)
        return response

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard(request: Request) -> Response:
        user = await current_user(request)
        if user is None:
            return RedirectResponse("/dashboard/login", status_code=303)
        return page(dashboard_page(user.username))

    @app.get("/dashboard/app.js", include_in_schema=False)
    async def script() -> Response:
        return Response(APP_JS, media_type="text/javascript", headers={"X-Content-Type-Options": "nosniff"})

    @app.get("/dashboard/favicon.svg", include_in_schema=False)
    async def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/dashboard/app.css", include_in_schema=False)
    async def style() -> Response:
        return Response(APP_CSS, media_type="text/css", headers={"X-Content-Type-Options": "nosniff"})

    async def data(request: Request, load: Any) -> Response:
        user = await current_user(request)
        if user is None:
            return JSONResponse({"ErrorMessage": "Sign in first.", "StatusCode": 401}, 401)
        key_text = request.query_params.get("key", "")
        if key_text and not key_text.isdigit():
            return JSONResponse({"ErrorMessage": "key must be an API key ID.", "StatusCode": 400}, 400)

        def run() -> Any:
            with runtime.engine.connect() as conn:
                return load(conn, int(key_text) if key_text else None)

        result = await run_in_threadpool(run)
        if result is None:
            return JSONResponse({"ErrorMessage": "Not found.", "StatusCode": 404}, 404)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    def _key(conn: Any, key: int | None) -> int | None:
        keys = [k["ID"] for k in api_key_list(conn)]
        if key is None:
            return keys[0] if keys else None
        return key if key in keys else None

    @app.get("/dashboard/api/keys", include_in_schema=False)
    async def keys(request: Request) -> Response:
        return await data(request, lambda conn, _key_id: {"Data": api_key_list(conn)})

    @app.get("/dashboard/api/overview", include_in_schema=False)
    async def overview_route(request: Request) -> Response:
        days_text = request.query_params.get("days", "30")
        days = int(days_text) if days_text.isdigit() else 30

        def load(conn: Any, key: int | None) -> Any:
            api_key_id = _key(conn, key)
            if api_key_id is None:
                return None
            return overview(conn, api_key_id, days=days, now=time.time(), store=runtime.store)

        return await data(request, load)

    @app.get("/dashboard/api/messages", include_in_schema=False)
    async def messages_route(request: Request) -> Response:
        query = request.query_params.get("q", "")

        def load(conn: Any, key: int | None) -> Any:
            api_key_id = _key(conn, key)
            return (
                None
                if api_key_id is None
                else {"Data": search_messages(conn, api_key_id, query, store=runtime.store)}
            )

        return await data(request, load)

    @app.get("/dashboard/api/messages/{message_id:int}/events", include_in_schema=False)
    async def timeline_route(message_id: int, request: Request) -> Response:
        def load(conn: Any, key: int | None) -> Any:
            api_key_id = _key(conn, key)
            found = (
                None
                if api_key_id is None
                else message_timeline(conn, api_key_id, message_id, store=runtime.store)
            )
            return None if found is None else {"Data": found}

        return await data(request, load)

    @app.get("/dashboard/api/suppressions", include_in_schema=False)
    async def suppressions_route(request: Request) -> Response:
        query = request.query_params.get("q", "")
        return await data(
            request, lambda conn, _key_id: {"Data": suppression_list(conn, query, store=runtime.store)}
        )
