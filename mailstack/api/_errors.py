"""One error vocabulary for the HTTP API: :class:`ApiError` and the one handler that renders every error —
ours, FastAPI's validation errors, Starlette's 404/405, an unavailable database — in Mailjet's shape:

    {"ErrorIdentifier": "<uuid4>", "ErrorCode": "...", "StatusCode": 400, "ErrorMessage": "...",
     "ErrorInfo": ""[, "ErrorRelatedTo": [...]][, "Errors": [...]]}

(the union of Mailjet's v3 REST errors, ``ErrorInfo``/``ErrorMessage``/``StatusCode``, and its Send API
v3.1 global errors, ``ErrorIdentifier``/``ErrorCode``/``StatusCode``/``ErrorMessage``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from mailstack.observability import get_logger
from mailstack.storage import StorageUnavailable, is_unavailable

__all__ = [
    "ERROR_RESPONSES",
    "MALFORMED_JSON",
    "ApiError",
    "ApiErrorBody",
    "error_responses",
    "install_error_handler",
]

log = get_logger("mailstack.api")

MALFORMED_JSON = "mj-0002"  # Mailjet's code for a body that is not (acceptable) JSON
RETRY_AFTER_SECONDS = 5  # an unavailable database: PostgreSQL restarting, a failover, a full disk freed
_MAX_REPORTED = 5  # validation problems named in one message


class ApiError(Exception):
    """An answer other than success: raise it anywhere below a route; the handler renders it."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        code: str | None = None,
        info: str = "",
        related: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status_code, message)
        self.status_code = status_code
        self.headers = dict(headers or {})
        self.payload: dict[str, Any] = {
            "ErrorIdentifier": str(uuid.uuid4()),
            "ErrorCode": code or f"ms-{status_code}",
            "StatusCode": status_code,
            "ErrorMessage": message,
            "ErrorInfo": info,
        }
        if related:
            self.payload["ErrorRelatedTo"] = list(related)
        self.payload.update(extra)

    def response(self) -> JSONResponse:
        # Every error carries the common keys, whoever built the payload (the Send API builds its own).
        body = dict(self.payload)
        body.setdefault("ErrorInfo", "")
        return JSONResponse(body, status_code=self.status_code, headers=self.headers)


class ApiErrorBody(BaseModel):
    """Mailjet's error shape, as the OpenAPI document declares it."""

    model_config = ConfigDict(extra="allow")

    ErrorIdentifier: str = Field(description="A fresh UUID: quote it when reporting a problem")
    ErrorCode: str = Field(description="mj-00xx / send-00xx as Mailjet, else ms-<status>")
    StatusCode: int
    ErrorMessage: str
    ErrorInfo: str = ""
    ErrorRelatedTo: list[str] | None = None


_DESCRIPTIONS = {
    400: "Invalid request (parameters, body or JSON)",
    401: "Missing or wrong API key and secret",
    403: "The API key lacks the scope this route needs",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    429: "Too many requests",
    503: "Database unavailable; retry after Retry-After seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses, in Mailjet's shape."""
    entries: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ApiErrorBody, "description": _DESCRIPTIONS.get(status, "Error")}
        if status == 503:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        entries[status] = entry
    return entries


# What any authenticated JSON route may answer besides its own statuses.
ERROR_RESPONSES = error_responses(400, 401, 403, 413, 503)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[str]]:
    problems: list[str] = []
    related: list[str] = []
    for error in exc.errors()[:_MAX_REPORTED]:
        location = [str(part) for part in error.get("loc", ())]
        where, name = (location[0], ".".join(location[1:])) if len(location) > 1 else ("request", "")
        related.append(name or where)
        # The message only: the offending input is not echoed (it may be huge, or someone's address).
        problems.append(f"{where} parameter {name}: {error.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(problems) + ".", related


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _methods(request: Request) -> list[str]:
    # Starlette's 405 names the methods of the first route matching the path; a path served by several
    # routes (GET and POST apart) supports all of theirs. Asked of the router itself, method by method.
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _render(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return exc.response()
    if isinstance(exc, RequestValidationError):
        message, related = _validation_message(exc)
        return ApiError(400, message, related=related).response()
    if isinstance(exc, HTTPException):
        # Starlette's own answers: unknown route (404), wrong method (405, with Allow), FastAPI's.
        detail = exc.detail if isinstance(exc.detail, str) else "Error"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_methods(request))
        return ApiError(exc.status_code, detail, headers=headers).response()
    if is_unavailable(exc):
        log.warning("database unavailable", path=request.url.path, error=type(exc).__name__)
        return ApiError(
            503,
            "The database is unavailable at the moment; retry later.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ).response()
    if isinstance(exc, DBAPIError | PoolTimeoutError | StorageUnavailable):
        # A storage error that is a bug, not an outage. (Other bugs reach here through Starlette's
        # last-resort middleware, which logs them itself.)
        log.exception("storage error", path=request.url.path, error=type(exc).__name__)
    return ApiError(500, "Internal error.").response()


def install_error_handler(app: FastAPI) -> None:
    """Route every error of ``app`` through the one renderer. ``Exception`` is Starlette's last resort
    (a bug): it answers, then re-raises so that the server logs the traceback."""
    for error_class in (
        ApiError,
        RequestValidationError,
        HTTPException,
        DBAPIError,
        PoolTimeoutError,
        StorageUnavailable,
        Exception,
    ):
        app.add_exception_handler(error_class, _render)
