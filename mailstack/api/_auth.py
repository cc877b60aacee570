"""HTTP Basic authentication with an API key and secret, as Mailjet does, and scopes as a dependency:

    def route(api_key: Annotated[ApiKeyRecord, Security(scope("read"))]) -> ...

answers 401 (missing or wrong credentials) or 403 (a genuine key without the scope) before the route
runs, and declares HTTP Basic in the OpenAPI document.
"""

from __future__ import annotations

import base64
import binascii
from functools import cache

from fastapi import Request
from fastapi.openapi.models import HTTPBase
from fastapi.security.base import SecurityBase

from mailstack.credentials import ApiKeyVerifier
from mailstack.storage import API_SCOPES, ApiKeyRecord

from ._errors import ApiError

__all__ = ["AUTH_FAILURE_MESSAGE", "ApiKeyScope", "Authenticator", "scope"]

# Mailjet's own wording, so that clients that match on it keep working.
AUTH_FAILURE_MESSAGE = (
    "API key authentication/authorization failure. You may be unauthorized to access the API or your API key "
    "may be expired. Visit API keys management section to check your keys."
)
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Provide an apikey and secretkey"'}


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


class ApiKeyScope(SecurityBase):
    """The dependency of a route that needs an API key holding ``scope_name``.

    A plain ``def``: FastAPI runs it in its threadpool, where the key record may be read from the database.
    """

    def __init__(self, scope_name: str) -> None:
        if scope_name not in API_SCOPES:
            raise ValueError(f"unknown scope {scope_name!r}")  # a typo in a route must not open it
        self.scope_name = scope_name
        self.model = HTTPBase(scheme="basic", description="The API key and its secret")
        self.scheme_name = "basicAuth"

    def __call__(self, request: Request) -> ApiKeyRecord:
        authenticator: Authenticator = request.app.state.authenticator
        record = authenticator.authenticate(request.headers.get("authorization"))
        if record is None:
            raise ApiError(401, AUTH_FAILURE_MESSAGE, headers=_CHALLENGE)
        if not record.allows(self.scope_name):
            raise ApiError(
                403,
                f"This API key lacks the '{self.scope_name}' scope needed here. "
                f"Grant it with: mailstack apikey scopes KEY --scope {self.scope_name}",
            )
        return record


@cache
def scope(scope_name: str) -> ApiKeyScope:
    """The one dependency object per scope (FastAPI then authenticates once per request)."""
    return ApiKeyScope(scope_name)
