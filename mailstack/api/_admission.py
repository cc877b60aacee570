"""Admission control: load shedding for the API, before any work is done for a request.

Beyond a configured limit (``[server] max_requests_per_second``, ``max_requests_per_second_per_key``,
``max_concurrent_requests``) a request to the API (``/v3…``, ``/api/…``) is answered at once with
``429 Too Many Requests``, a ``Retry-After`` header (whole seconds) and an error in Mailjet's shape; its body
is not read. Health, metrics, tracking, unsubscribe and dashboard pages are never shed. Limits hold per
``serve`` process; every limit is off (0) by default.

A pure ASGI middleware (no request objects, no thread): it runs on the event loop, so its counters need no
lock. The per-key bucket is keyed by a hash of the whole ``Authorization`` header, not by the public key
alone: someone who only knows a public key cannot use up its owner's allowance.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailstack.config import ServerSettings

__all__ = ["TOO_MANY_REQUESTS", "Admission", "add_admission"]

# mailstack's own codes are send-09xx (send-0901: the render budget); Mailjet documents none for 429.
TOO_MANY_REQUESTS = "send-0902"
LIMITED_PREFIXES = ("/v3/", "/v3.1/", "/api/")
MAX_KEY_BUCKETS = 10_000  # distinct credentials remembered; the least recently seen are forgotten first


class _Bucket:
    """A token bucket: ``rate`` requests per second, up to a second's worth (at least one) at once."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.tokens = self.burst
        self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until a request may be admitted (0: now)."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1.0


class Admission:
    """ASGI middleware admitting API requests within the limits of ``settings``; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: ServerSettings,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._clock = clock
        self._max_concurrent = settings.max_concurrent_requests
        self._in_flight = 0
        rate = settings.max_requests_per_second
        self._global = _Bucket(rate, clock()) if rate else None
        self._per_key_rate = settings.max_requests_per_second_per_key
        self._keys: OrderedDict[bytes, _Bucket] = OrderedDict()
        self._shed = Counter(
            "mailstack_http_requests_shed",
            "API requests answered 429 by admission control, by the limit that applied",
            ["limit"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIXES):
            await self._app(scope, receive, send)
            return
        refused = self._refusal(scope)
        if refused is not None:
            limit, retry_after = refused
            self._shed.labels(limit).inc()
            await _too_many_requests(send, retry_after)
            return
        self._in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._in_flight -= 1

    def _refusal(self, scope: Scope) -> tuple[str, float] | None:
        """``(limit, seconds to wait)`` when the request must be shed; None admits it (and counts it)."""
        if self._max_concurrent and self._in_flight >= self._max_concurrent:
            return "concurrency", 1.0
        now = self._clock()
        key_bucket = self._key_bucket(scope, now) if self._per_key_rate else None
        # Look at both before taking from either: a refused request uses up no allowance.
        for limit, bucket in (("global", self._global), ("key", key_bucket)):
            if bucket is not None and (wait := bucket.wait(now)) > 0:
                return limit, wait
        for bucket in (self._global, key_bucket):
            if bucket is not None:
                bucket.take()
        return None

    def _key_bucket(self, scope: Scope, now: float) -> _Bucket:
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        key = hashlib.sha256(authorization).digest()
        bucket = self._keys.get(key)
        if bucket is None:
            bucket = self._keys[key] = _Bucket(self._per_key_rate, now)
            if len(self._keys) > MAX_KEY_BUCKETS:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        return bucket


async def _too_many_requests(send: Send, retry_after: float) -> None:
    seconds = max(1, math.ceil(retry_after))
    body = json.dumps(
        {
            "ErrorIdentifier": str(uuid.uuid4()),
            "ErrorCode": TOO_MANY_REQUESTS,
            "StatusCode": 429,
            "ErrorMessage": f"Too many requests: the server is at its set limit; retry in {seconds} s.",
        }
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 429,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(seconds).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


def add_admission(app: FastAPI, settings: ServerSettings, registry: CollectorRegistry) -> None:
    """Put admission control in front of ``app`` when ``settings`` set a limit (nothing otherwise)."""
    if (
        settings.max_requests_per_second
        or settings.max_requests_per_second_per_key
        or settings.max_concurrent_requests
    ):
        app.add_middleware(Admission, settings=settings, registry=registry)
