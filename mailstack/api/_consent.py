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
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Query, Request, Response, Security
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
from mailstack.runtime import Runtime
from mailstack.storage import ApiKeyRecord, reading, valid_address

from ._accept import check_senders
from ._auth import scope
from ._deps import EmailPath, JsonDep, RuntimeDep
from ._errors import ERROR_RESPONSES, ApiError, error_responses
from ._sendv31 import MessageErrors, ParsedMessage, error_message_json, parse_send_request
from ._tracking import _page

__all__ = ["BODY_LIMITS", "router"]

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


_MAX_FORM = 8192  # the confirmation page's form: one signed token
BODY_LIMITS = [("/consent/confirm", _MAX_FORM)]
router = APIRouter(tags=["Consents"])
ConsentsKey = Annotated[ApiKeyRecord, Security(scope("consents"))]


class _MailRefusedError(Exception):
    """The confirmation mail is invalid (e.g. a sender domain without DKIM key): roll everything back."""

    def __init__(self, errors: MessageErrors) -> None:
        super().__init__("confirmation mail refused")
        self.errors = errors


def _client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def _confirmation_message(
    runtime: Runtime, body: dict[str, Any], list_name: str, address: str, token: str
) -> dict[str, Any]:
    url = f"{runtime.settings.public_url}/consent/confirm?token={quote(token)}"
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


@router.post(
    "/api/v1/consents",
    summary="Ask an address to confirm a subscription (double opt-in): mails a confirmation link",
    status_code=201,
    responses={**ERROR_RESPONSES, **error_responses(429)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["Email", "List", "From"],
                        "additionalProperties": False,
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
def request_route(request: Request, api_key: ConsentsKey, body: JsonDep, runtime: RuntimeDep) -> Response:
    fields = body.value
    if not isinstance(fields, dict):
        raise ApiError(400, "The body must be a JSON object")
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ApiError(400, f"Unknown properties: {', '.join(sorted(unknown))}")
    address = valid_address(fields.get("Email"))
    if address is None:
        raise ApiError(400, "Email must be an email address")
    if not isinstance(fields.get("From"), dict):
        raise ApiError(400, "From is required: the sender of the confirmation mail, {Email, Name}")
    text = fields.get("TextPart")
    if text is not None and (not isinstance(text, str) or PLACEHOLDER not in text):
        raise ApiError(400, f"TextPart must be text containing {PLACEHOLDER} (replaced by the link)")
    return _store_request(runtime, api_key, fields, address, _client_ip(request))


def _store_request(
    runtime: Runtime, api_key: ApiKeyRecord, body: dict[str, Any], address: str, ip: str
) -> Response:
    settings = runtime.settings
    now = time.time()
    accepted: list[Any] = []
    runtime.signers.get()  # the sender rule may load keys: before the transaction, not inside it
    try:
        with runtime.engine.begin() as conn:
            outcome = request_consent(
                conn,
                runtime.vault,
                runtime.compose_settings.tokens,
                address,
                body.get("List"),
                actor=f"api:{api_key.public_key}",
                api_key_id=api_key.id,
                ip=ip,
                now=now,
            )
            if outcome.send_confirmation:
                message = _confirmation_message(
                    runtime, body, outcome.record.list_name, address, outcome.token
                )
                parsed = parse_send_request(
                    {"Messages": [message]},
                    max_recipients=settings.mail.max_recipients,
                    max_message_bytes=settings.mail.max_message_bytes,
                )
                results = list(parsed.results)
                check_senders(results, runtime.acceptor)
                if not isinstance(results[0], ParsedMessage):
                    assert isinstance(results[0], MessageErrors)
                    raise _MailRefusedError(results[0])
                accepted = runtime.acceptor.accept(conn, api_key.id, [results[0].spec], now=now)
    except ConsentThrottledError as exc:
        raise ApiError(429, str(exc)) from None
    except ConsentError as exc:
        raise ApiError(400, str(exc)) from None
    except _MailRefusedError as refused:
        error = error_message_json(refused.errors)
        raise ApiError(400, "The confirmation mail cannot be sent.", Errors=error.get("Errors", [])) from None
    runtime.acceptor.notify(accepted)
    data: dict[str, Any] = {"Count": 1, "Data": [consent_json(outcome.record)]}
    if accepted:
        data["MessageID"] = accepted[0][0].message_id
        return JSONResponse(data, status_code=201)
    return JSONResponse(data)  # already confirmed, or a link was sent less than an hour ago


@router.get(
    "/api/v1/consents/{email}",
    summary="An address's consent records, every list of this API key",
    responses={**ERROR_RESPONSES, **error_responses(404)},
)
def show_route(email: EmailPath, api_key: ConsentsKey, runtime: RuntimeDep) -> Response:
    address = valid_address(email)
    if address is None:
        raise ApiError(404, "Object not found: not an email address")
    with reading(runtime.engine) as conn:
        records = list_consents(conn, runtime.vault, address, api_key_id=api_key.id)
    if not records:
        raise ApiError(404, f"Object not found: consent of {address}")
    data = [consent_json(record) for record in records]
    return JSONResponse({"Count": len(data), "Total": len(data), "Data": data})


@router.delete(
    "/api/v1/consents/{email}",
    summary="Withdraw an address's consent (to ?list=, or to every list)",
    responses={**ERROR_RESPONSES, **error_responses(404)},
)
def withdraw_route(
    email: EmailPath,
    api_key: ConsentsKey,
    runtime: RuntimeDep,
    list_name: Annotated[str | None, Query(alias="list", max_length=200)] = None,
) -> Response:
    address = valid_address(email)
    if address is None:
        raise ApiError(404, "Object not found: not an email address")
    try:
        with runtime.engine.begin() as conn:
            records = withdraw_consent(
                conn,
                runtime.vault,
                address,
                list_name,
                api_key_id=api_key.id,
                actor=f"api:{api_key.public_key}",
            )
    except ConsentError as exc:
        raise ApiError(400, str(exc)) from None
    if not records:
        raise ApiError(404, f"Object not found: a consent of {address} to withdraw")
    data = [consent_json(record) for record in records]
    return JSONResponse({"Count": len(data), "Total": len(data), "Data": data})


def _failure_page(message: str) -> HTMLResponse:
    return _page("Link not valid", f"<h1>This link cannot be used</h1><p>{html.escape(message)}</p>", 400)


_PAGE = {"content": {"text/html": {"schema": {"type": "string"}}}}


@router.get(
    "/consent/confirm",
    summary="The confirmation page (asks to confirm)",
    response_class=HTMLResponse,
    responses={400: {"description": "Not a valid link", **_PAGE}},
)
def confirm_page(
    runtime: RuntimeDep, token: Annotated[str, Query(description="The signed link")] = ""
) -> Response:
    try:
        with reading(runtime.engine) as conn:
            record = check_consent_link(conn, runtime.vault, runtime.compose_settings.tokens, token)
    except ConsentError as exc:
        return _failure_page(str(exc))
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


async def _form(request: Request) -> dict[str, list[str]]:
    # Small: the body limit of this route (BODY_LIMITS) stops anything larger while it arrives.
    try:
        return parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=5)
    except ValueError:  # more fields than the page's form has: no token to confirm
        return {}


@router.post(
    "/consent/confirm",
    summary="Confirm a subscription (the page's button)",
    response_class=HTMLResponse,
    responses={400: {"description": "Not a valid link", **_PAGE}, **error_responses(413)},
)
def confirm(
    request: Request, form: Annotated[dict[str, list[str]], Depends(_form)], runtime: RuntimeDep
) -> Response:
    token = form.get("token", [""])[0]
    try:
        with runtime.engine.begin() as conn:
            record = confirm_consent(
                conn, runtime.vault, runtime.compose_settings.tokens, token, ip=_client_ip(request)
            )
    except ConsentError as exc:
        return _failure_page(str(exc))
    return _page(
        "Confirmed",
        f"<h1>Thank you</h1><p>Your subscription to {html.escape(record.list_name)} is confirmed.</p>",
    )
