"""API key credentials (``api_key:api_secret``), checked the same way by every front door (HTTP, SMTP)."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine

from mailstack.storage import ApiKeyRecord, find_api_key, reading, secret_matches

__all__ = ["ApiKeyVerifier"]

_CACHE_SECONDS = 30.0
_MAX_PUBLIC_KEY = 64


class ApiKeyVerifier:
    """Checks an API key and its secret; key records are cached briefly to spare the database.

    Secrets are compared against the stored SHA-256 hash in constant time; a disabled key never
    verifies. A key disabled in the database stops working within the cache lifetime (30 s).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}
        self._lock = threading.Lock()

    def _record(self, public_key: str) -> ApiKeyRecord | None:
        now = time.monotonic()
        cached = self._cache.get(public_key)
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        with reading(self._engine) as conn:
            record = find_api_key(conn, public_key)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: unknown keys must not grow it forever
                self._cache.clear()
            self._cache[public_key] = (now, record)
        return record

    def verify(self, public_key: str, secret: str) -> ApiKeyRecord | None:
        """The API key record when ``public_key`` exists, is enabled and ``secret`` is its secret."""
        if not public_key or len(public_key) > _MAX_PUBLIC_KEY:
            return None
        record = self._record(public_key)
        if record is None or record.disabled or not secret_matches(record, secret):
            return None
        return record
