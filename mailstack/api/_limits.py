"""One streaming limit on request bodies, for every route: the bytes are counted as they arrive, and past
the limit reading stops and the answer is 413 in Mailjet's shape. A declared ``Content-Length`` over the
limit is answered before a byte of the body is read. Routes that only ever take a small form (the
dashboard login, a consent confirmation, an unsubscribe) declare a smaller limit of their own.

A pure ASGI middleware (no ``BaseHTTPMiddleware``): it wraps ``receive``, so nothing buffers the body
before the limit is applied.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import ApiError

__all__ = ["BodyLimit", "BodyTooLargeError"]


class BodyTooLargeError(ApiError):
    """Raised from ``receive`` past the limit: whatever reads the body stops there."""

    def __init__(self, limit: int) -> None:
        # Connection: close, so a client still uploading is stopped rather than drained.
        super().__init__(413, f"Request body larger than {limit} bytes.", headers={"Connection": "close"})


class BodyLimit:
    """``default`` bytes for every request, or the limit of the first ``(path template, bytes)`` whose
    template (Starlette's syntax, e.g. ``/unsubscribe/{token}``) matches the path."""

    def __init__(self, app: ASGIApp, *, default: int, routes: Sequence[tuple[str, int]] = ()) -> None:
        self.app = app
        self.default = default
        self.routes: list[tuple[re.Pattern[str], int]] = [
            (compile_path(path)[0], limit) for path, limit in routes
        ]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.routes:
            if pattern.match(path):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for name, value in scope["headers"]:
            # The server has already refused a malformed or repeated Content-Length.
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await BodyTooLargeError(limit).response()(scope, receive, send)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLargeError as exc:
            # Normally the app's error handler has answered already; this covers a reader outside it.
            if started:
                raise
            await exc.response()(scope, receive, send)
