"""Consent routes: ``/api/v1/consents`` (double opt-in requests, look-ups, withdrawals; the ``consents``
scope) and the public confirmation page ``/consent/confirm``.

Each API key has its own lists: it sees, withdraws and is rate-limited on its own records only.

A request stores a pending record and sends the confirmation mail through the Send API's own path (DKIM,
suppression list, queue) in one transaction: either both happen or neither. The link in the mail opens a
page whose button confirms: a GET never confirms, because mail scanners and link previews follow links on
their own, and a consent they "confirmed" would prove nothing.
"""

from __future__ import annotations

import html
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from mailstack.privacy import (
    ConsentError,
    ConsentRecord,
    ConsentThrottledError,
    check_consent_link,
    confirm_consent,
    list_consents,
    request_consent,
    withdraw_consent,
)
from mailstack.service import Runtime
from mailstack.storage import ApiKeyRecord, valid_address

from ._accept import _check_senders
from ._auth import Authenticator, authenticate_request
from ._sendv31 import MessageErrors, ParsedMessage, RequestError, error_message_json, parse_send_request
from ._tracking import _page

__all__ = ["register_consent"]

_FIELDS = {"Email", "List", "From", "Subject", "TextPart"}
PLACEHOLDER = "{ConfirmURL}"
_DEFAULT_TEXT = (
    "Hello,\n\nplease confirm that you want to receive {list}: open this link and press Confirm.\n\n"
    f"{PLACEHOLDER}\n\nIf you did not ask for this, ignore this email: you will not hear from us again.\n"
)


def _iso(timestamp: float | None) -> str | None:
    return (
        None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def consent_json(record: ConsentRecord) -> dict[str, Any]:
    """A record in the API's shape (Mailjet-style capitalised names)."""
    return {
        "ID": record.id,
        "Email": record.address,
        "List": record.list_name,
        "Status": record.status,
        "RequestedAt": _iso(record.requested_at),
        "RequestedIP": record.requested_ip,
        "ConfirmedAt": _iso(record.confirmed_at),
        "ConfirmedIP": record.confirmed_ip,
        "WithdrawnAt": _iso(record.withdrawn_at),
    }


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"StatusCode": status, "ErrorMessage": message, **extra}, status_code=status)


class _MailRefusedError(Exception):
    """The confirmation mail is invalid (e.g. a sender domain without DKIM key): roll everything back."""

    def __init__(self, errors: MessageErrors) -> None:
        super().__init__("confirmation mail refused")
        self.errors = errors


def _client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def register_consent(app: FastAPI, runtime: Runtime, auth: Authenticator) -> None:
    """Add the consent routes to ``app``."""
    engine = runtime.engine
    vault = runtime.vault
    signer = runtime.compose_settings.tokens
    settings = runtime.settings

    def confirmation_message(
        body: dict[str, Any], list_name: str, address: str, token: str
    ) -> dict[str, Any]:
        url = f"{settings.public_url}/consent/confirm?token={quote(token)}"
        text = body.get("TextPart") or _DEFAULT_TEXT.replace("{list}", list_name)
        return {
            "From": body.get("From"),
            "To": [{"Email": address}],
            "Subject": body.get("Subject") or f"Please confirm your subscription to {list_name}",
            "TextPart": text.replace(PLACEHOLDER, url),
            # The link must reach the subject as signed; and nobody is tracked before they consent.
            "TrackOpens": "disabled",
            "TrackClicks": "disabled",
            "CustomCampaign": "consent-confirmation",
        }

    @app.post(
        "/api/v1/consents",
        tags=["Consents"],
        summary="Ask an address to confirm a subscription (double opt-in): mails a confirmation link",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["Email", "List", "From"],
                            "properties": {
                                "Email": {"type": "string", "format": "email"},
                                "List": {"type": "string", "maxLength": 200},
                                "From": {
                                    "type": "object",
                                    "properties": {"Email": {"type": "string"}, "Name": {"type": "string"}},
                                },
                                "Subject": {"type": "string"},
                                "TextPart": {
                                    "type": "string",
                                    "description": f"Must contain {PLACEHOLDER}, replaced by the link.",
                                },
                            },
                        }
                    }
                },
            }
        },
    )
    async def request_route(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "consents")
        if isinstance(api_key, Response):
            return api_key
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Malformed JSON")
        if not isinstance(body, dict):
            return _error(400, "The body must be a JSON object")
        unknown = set(body) - _FIELDS
        if unknown:
            return _error(400, f"Unknown properties: {', '.join(sorted(unknown))}")
        address = valid_address(body.get("Email"))
        if address is None:
            return _error(400, "Email must be an email address")
        if not isinstance(body.get("From"), dict):
            return _error(400, "From is required: the sender of the confirmation mail, {Email, Name}")
        text = body.get("TextPart")
        if text is not None and (not isinstance(text, str) or PLACEHOLDER not in text):
            return _error(400, f"TextPart must be text containing {PLACEHOLDER} (replaced by the link)")
        ip = _client_ip(request)
        return await run_in_threadpool(store_request, api_key, body, address, ip)

    def store_request(api_key: ApiKeyRecord, body: dict[str, Any], address: str, ip: str) -> Response:
        now = time.time()
        accepted: list[Any] = []
        domains = runtime.signers.get().domains  # before the transaction: it may read the database
        try:
            with engine.begin() as conn:
                outcome = request_consent(
                    conn,
                    vault,
                    signer,
                    address,
                    body.get("List"),
                    actor=f"api:{api_key.public_key}",
                    api_key_id=api_key.id,
                    ip=ip,
                    now=now,
                )
                if outcome.send_confirmation:
                    message = confirmation_message(body, outcome.record.list_name, address, outcome.token)
                    parsed = parse_send_request(
                        {"Messages": [message]},
                        max_recipients=settings.mail.max_recipients,
                        max_message_bytes=settings.mail.max_message_bytes,
                    )
                    results = list(parsed.results)
                    _check_senders(results, domains)
                    if not isinstance(results[0], ParsedMessage):
                        assert isinstance(results[0], MessageErrors)
                        raise _MailRefusedError(results[0])
                    accepted = runtime.accept_messages(conn, api_key.id, [results[0].spec], now=now)
        except ConsentThrottledError as exc:
            return _error(429, str(exc))
        except ConsentError as exc:
            return _error(400, str(exc))
        except RequestError as exc:
            return JSONResponse(exc.payload, exc.status_code)
        except _MailRefusedError as refused:
            error = error_message_json(refused.errors)
            return _error(400, "The confirmation mail cannot be sent.", Errors=error.get("Errors", []))
        runtime.notify(accepted)
        data: dict[str, Any] = {"Count": 1, "Data": [consent_json(outcome.record)]}
        if accepted:
            data["MessageID"] = accepted[0][0].message_id
            return JSONResponse(data, status_code=201)
        return JSONResponse(data)  # already confirmed, or a link was sent less than an hour ago

    @app.get(
        "/api/v1/consents/{email}", tags=["Consents"], summary="An address's consent records, every list"
    )
    async def show_route(email: str, request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "consents")
        if isinstance(api_key, Response):
            return api_key
        address = valid_address(email)
        if address is None:
            return _error(400, "expected /api/v1/consents/{email}")

        def load() -> list[ConsentRecord]:
            with engine.connect() as conn:
                return list_consents(conn, vault, address, api_key_id=api_key.id)

        records = await run_in_threadpool(load)
        if not records:
            return _error(404, f"Object not found: consent of {address}")
        data = [consent_json(record) for record in records]
        return JSONResponse({"Count": len(data), "Total": len(data), "Data": data})

    @app.delete(
        "/api/v1/consents/{email}",
        tags=["Consents"],
        summary="Withdraw an address's consent (to ?list=, or to every list)",
    )
    async def withdraw_route(email: str, request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "consents")
        if isinstance(api_key, Response):
            return api_key
        address = valid_address(email)
        if address is None:
            return _error(400, "expected /api/v1/consents/{email}[?list=NAME]")
        list_name = request.query_params.get("list")

        def withdraw() -> list[ConsentRecord]:
            with engine.begin() as conn:
                return withdraw_consent(
                    conn, vault, address, list_name, api_key_id=api_key.id, actor=f"api:{api_key.public_key}"
                )

        try:
            records = await run_in_threadpool(withdraw)
        except ConsentError as exc:
            return _error(400, str(exc))
        if not records:
            return _error(404, f"Object not found: a consent of {address} to withdraw")
        data = [consent_json(record) for record in records]
        return JSONResponse({"Count": len(data), "Total": len(data), "Data": data})

    def failure_page(message: str) -> HTMLResponse:
        return _page("Link not valid", f"<h1>This link cannot be used</h1><p>{html.escape(message)}</p>", 400)

    @app.get("/consent/confirm", tags=["Consents"], summary="The confirmation page (asks to confirm)")
    async def confirm_page(request: Request) -> Response:
        token = request.query_params.get("token", "")

        def check() -> ConsentRecord:
            with engine.connect() as conn:
                return check_consent_link(conn, vault, signer, token)

        try:
            record = await run_in_threadpool(check)
        except ConsentError as exc:
            return failure_page(str(exc))
        if record.status == "confirmed":
            return _page("Confirmed", "<h1>Your subscription is already confirmed</h1>")
        action = html.escape("/consent/confirm", quote=True)
        return _page(
            "Confirm your subscription",
            "<h1>Confirm your subscription</h1>"
            f"<p>Do you want to receive {html.escape(record.list_name)}?</p>"
            f'<form method=post action="{action}"><input type=hidden name=token '
            f'value="{html.escape(token, quote=True)}"><button type=submit>Confirm</button></form>',
        )

    @app.post("/consent/confirm", tags=["Consents"], summary="Confirm a subscription (the page's button)")
    async def confirm(request: Request) -> Response:
        raw = (await request.body())[:8192].decode("utf-8", "replace")
        token = parse_qs(raw, max_num_fields=5).get("token", [""])[0]
        ip = _client_ip(request)

        def store() -> ConsentRecord:
            with engine.begin() as conn:
                return confirm_consent(conn, vault, signer, token, ip=ip)

        try:
            record = await run_in_threadpool(store)
        except ConsentError as exc:
            return failure_page(str(exc))
        return _page(
            "Confirmed",
            f"<h1>Thank you</h1><p>Your subscription to {html.escape(record.list_name)} is confirmed.</p>",
        )
