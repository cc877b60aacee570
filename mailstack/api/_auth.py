"""HTTP Basic authentication with an API key and secret, as Mailjet does."""

from __future__ import annotations

import base64
import binascii
import uuid

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mailstack.credentials import ApiKeyVerifier
from mailstack.storage import API_SCOPES, ApiKeyRecord

# Mailjet's own wording, so that clients that match on it keep working.
AUTH_FAILURE_MESSAGE = (
    "API key authentication/authorization failure. You may be unauthorized to access the API or your API key "
    "may be expired. Visit API keys management section to check your keys."
)


def auth_failure_body() -> dict[str, object]:
    return {"ErrorIdentifier": str(uuid.uuid4()), "StatusCode": 401, "ErrorMessage": AUTH_FAILURE_MESSAGE}


class Authenticator(ApiKeyVerifier):
    """Checks ``Authorization: Basic`` credentials (the check itself is shared with SMTP AUTH)."""

    def authenticate(self, header: str | None) -> ApiKeyRecord | None:
        """The API key for valid credentials, else None."""
        if not header or header[:6].lower() != "basic ":
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        public_key, sep, secret = decoded.partition(":")
        if not sep:
            return None
        return self.verify(public_key, secret)


def unauthorized_response() -> JSONResponse:
    """Mailjet's 401 answer to missing or wrong credentials."""
    return JSONResponse(
        auth_failure_body(),
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="Provide an apikey and secretkey"'},
    )


def forbidden_response(scope: str) -> JSONResponse:
    """403 for a genuine key that lacks the scope a route needs (saying which)."""
    return JSONResponse(
        {
            "ErrorIdentifier": str(uuid.uuid4()),
            "StatusCode": 403,
            "ErrorMessage": f"This API key lacks the '{scope}' scope needed here. "
            f"Grant it with: mailstack apikey scopes KEY --scope {scope}",
        },
        status_code=403,
    )


async def authenticate_request(
    auth: Authenticator, request: Request, scope: str
) -> ApiKeyRecord | JSONResponse:
    """The API key of a request's Basic credentials (checked off the event loop) when it holds
    ``scope``; otherwise the response to send: 401 for missing or wrong credentials, 403 for a
    missing scope."""
    if scope not in API_SCOPES:
        raise ValueError(f"unknown scope {scope!r}")  # a typo in a route must not open it
    record = await run_in_threadpool(auth.authenticate, request.headers.get("authorization"))
    if record is None:
        return unauthorized_response()
    if not record.allows(scope):
        return forbidden_response(scope)
    return record
