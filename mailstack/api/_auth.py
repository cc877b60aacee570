"""HTTP Basic authentication with an API key and secret, as Mailjet does."""

from __future__ import annotations

import base64
import binascii
import threading
import time
import uuid

from sqlalchemy import Engine

from mailstack.storage import ApiKeyRecord, find_api_key, secret_matches

# Mailjet's own wording, so that clients that match on it keep working.
AUTH_FAILURE_MESSAGE = (
    "API key authentication/authorization failure. You may be unauthorized to access the API or your API key "
    "may be expired. Visit API keys management section to check your keys."
)
_CACHE_SECONDS = 30.0


def auth_failure_body() -> dict[str, object]:
    return {"ErrorIdentifier": str(uuid.uuid4()), "StatusCode": 401, "ErrorMessage": AUTH_FAILURE_MESSAGE}


class Authenticator:
    """Checks ``Authorization: Basic`` credentials; key records are cached briefly to spare the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}
        self._lock = threading.Lock()

    def _record(self, public_key: str) -> ApiKeyRecord | None:
        now = time.monotonic()
        cached = self._cache.get(public_key)
        if cached is not None and now - cached[0] < _CACHE_SECONDS:
            return cached[1]
        with self._engine.connect() as conn:
            record = find_api_key(conn, public_key)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: unknown keys must not grow it forever
                self._cache.clear()
            self._cache[public_key] = (now, record)
        return record

    def authenticate(self, header: str | None) -> ApiKeyRecord | None:
        """The API key for valid credentials, else None."""
        if not header or header[:6].lower() != "basic ":
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        public_key, sep, secret = decoded.partition(":")
        if not sep or not public_key or len(public_key) > 64:
            return None
        record = self._record(public_key)
        if record is None or record.disabled or not secret_matches(record, secret):
            return None
        return record
