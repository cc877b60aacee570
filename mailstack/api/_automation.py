"""Automation routes: ``/api/v1/automations`` (list, create, delete) and ``/api/v1/automations/{id}/runs``
(what a rule did: follow-ups sent, and why others were refused); the engine runs with the app.

A rule's ``Template`` is a Send API v3.1 message without recipients (``From``, ``Subject``,
``TextPart``/``HTMLPart``, ``TemplateLanguage``, ``Variables``, ``CustomCampaign``...); the recipient of
the triggering message becomes its ``To``. It is validated like a Send API message when the rule is
created, and sent through the same path (suppression list included) when it fires.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from mailstack.automation import (
    TRIGGER_EVENTS,
    AutomationEngine,
    SendFailedError,
    create_rule,
    delete_rule,
    list_rules,
    list_runs,
    recipient_properties,
)
from mailstack.runtime import Runtime
from mailstack.storage import ApiKeyRecord, api_key_record
from mailstack.storage.schema import api_keys

from ._accept import accept_send_request
from ._auth import Authenticator, authenticate_request
from ._lifespan import run_in_background
from ._sendv31 import MessageErrors, RequestError, parse_send_request

__all__ = ["register_automation"]

_FIELDS = {"Name", "EventType", "CustomCampaign", "Template"}
_PROBE = {"Email": "recipient@example.com"}  # stands in for the recipient while validating a template


def _error(message: str, status: int = 400, errors: list[Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"ErrorInfo": "", "ErrorMessage": message, "StatusCode": status}
    if errors:
        body["Errors"] = errors
    return JSONResponse(body, status)


def _api_key(runtime: Runtime, api_key_id: int) -> ApiKeyRecord:
    with runtime.engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == api_key_id)).one()
    return api_key_record(row)


def make_sender(runtime: Runtime) -> Any:
    """The engine's way of sending: the Send API's own acceptance path, idempotent per run."""

    def send(api_key_id: int, message: dict[str, Any], idempotency_key: str) -> int:
        api_key = _api_key(runtime, api_key_id)
        if api_key.disabled:
            raise SendFailedError("the rule's API key is disabled")
        if not api_key.allows("send"):
            raise SendFailedError("the rule's API key lacks the 'send' scope")
        body = {"Messages": [message]}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        try:
            _status, payload, _replayed = accept_send_request(runtime, api_key, body, idempotency_key, digest)
        except RequestError as exc:
            raise SendFailedError(json.dumps(exc.payload)[:1000]) from None
        entry = payload["Messages"][0]
        if entry.get("Status") != "success" or not entry.get("To"):
            raise SendFailedError(json.dumps(entry.get("Errors", entry))[:1000])
        return int(entry["To"][0]["MessageID"])

    return send


def _check_template(runtime: Runtime, template: object) -> tuple[str, list[Any]]:
    if not isinstance(template, dict):
        return "Template must be a Send API message object.", []
    present = recipient_properties(template)
    if present:
        return (
            f"Template must not name recipients ({', '.join(present)}): the trigger's recipient is used.",
            [],
        )
    settings = runtime.settings
    try:
        parsed = parse_send_request(
            {"Messages": [{**template, "To": [_PROBE]}]},
            max_recipients=settings.mail.max_recipients,
            max_message_bytes=settings.mail.max_message_bytes,
        )
    except RequestError as exc:
        return "Template is not a valid message.", [exc.payload]
    result = parsed.results[0]
    if isinstance(result, MessageErrors):
        return "Template is not a valid message.", [error.to_json() for error in result.errors]
    domain = result.spec.sender.domain
    if not runtime.acceptor.may_send_from(domain):
        return f"Template's From domain {domain} has no DKIM key on this server.", []
    return "", []


def register_automation(app: FastAPI, runtime: Runtime, auth: Authenticator) -> AutomationEngine:
    """Add the automation routes; the engine thread starts and stops with the app."""
    engine = AutomationEngine(
        runtime.engine,
        make_sender(runtime),
        vault=runtime.vault,
        poll_seconds=runtime.settings.automation.poll_seconds,
    )
    run_in_background(app, engine.run, name="automation", prepare=engine.start)
    app.state.automation = engine

    @app.get("/api/v1/automations", tags=["Automation"], summary="Your automation rules")
    async def list_route(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "send")
        if isinstance(api_key, Response):
            return api_key

        def load() -> list[dict[str, Any]]:
            with runtime.engine.connect() as conn:
                return [rule.to_json() for rule in list_rules(conn, api_key.id)]

        data = await run_in_threadpool(load)
        return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})

    @app.post(
        "/api/v1/automations",
        tags=["Automation"],
        summary='Add a rule: "when EventType happens for CustomCampaign, send Template to that recipient"',
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["EventType", "CustomCampaign", "Template"],
                            "properties": {
                                "Name": {"type": "string", "maxLength": 200},
                                "EventType": {"type": "string", "enum": list(TRIGGER_EVENTS)},
                                "CustomCampaign": {"type": "string", "maxLength": 255},
                                "Template": {
                                    "type": "object",
                                    "description": "A Send API message without To",
                                },
                            },
                        }
                    }
                },
            }
        },
    )
    async def create_route(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "send")
        if isinstance(api_key, Response):
            return api_key
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _error("The body must be a JSON object.")
        if not isinstance(body, dict):
            return _error("The body must be a JSON object.")
        unknown = set(body) - _FIELDS
        if unknown:
            return _error(f"Unknown properties: {', '.join(sorted(unknown))}.")
        event_type = body.get("EventType")
        if event_type not in TRIGGER_EVENTS:
            return _error(f"EventType must be one of {', '.join(TRIGGER_EVENTS)}.")
        campaign = body.get("CustomCampaign")
        if not isinstance(campaign, str) or not 0 < len(campaign) <= 255:
            return _error(
                "CustomCampaign must name the campaign whose events trigger the rule (1-255 characters)."
            )
        name = body.get("Name", "")
        if not isinstance(name, str) or len(name) > 200:
            return _error("Name must be at most 200 characters.")
        template = body.get("Template")

        def create() -> tuple[str, list[Any], dict[str, Any]]:
            problem, errors = _check_template(runtime, template)
            if problem:
                return problem, errors, {}
            assert isinstance(template, dict)
            with runtime.engine.begin() as conn:
                rule = create_rule(
                    conn,
                    api_key_id=api_key.id,
                    name=name,
                    event_type=str(event_type),
                    campaign=campaign,
                    template=template,
                )
            return "", [], rule.to_json()

        problem, errors, data = await run_in_threadpool(create)
        if problem:
            return _error(problem, errors=errors)
        return JSONResponse({"Count": 1, "Data": [data], "Total": 1}, 201)

    @app.delete("/api/v1/automations/{rule_id:int}", tags=["Automation"], summary="Remove a rule")
    async def delete_route(rule_id: int, request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "send")
        if isinstance(api_key, Response):
            return api_key

        def remove() -> bool:
            with runtime.engine.begin() as conn:
                return delete_rule(conn, api_key.id, rule_id)

        if not await run_in_threadpool(remove):
            return _error(f"Object not found: automation {rule_id}", 404)
        return Response(status_code=204)

    @app.get(
        "/api/v1/automations/{rule_id:int}/runs",
        tags=["Automation"],
        summary="A rule's runs, newest first: the follow-up sent, or why it was refused",
    )
    async def runs_route(rule_id: int, request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "send")
        if isinstance(api_key, Response):
            return api_key
        params = request.query_params
        try:
            limit = min(max(int(params.get("Limit", "100") or 100), 1), 1000)
            offset = max(int(params.get("Offset", "0") or 0), 0)
        except ValueError:
            return _error("Limit and Offset must be integers.")

        def load() -> list[dict[str, Any]] | None:
            # Errors are stored sealed (they quote the recipient); opened here for the rule's owner.
            with runtime.engine.connect() as conn:
                runs = list_runs(conn, runtime.vault, api_key.id, rule_id, limit=limit, offset=offset)
            return None if runs is None else [run.to_json() for run in runs]

        data = await run_in_threadpool(load)
        if data is None:
            return _error(f"Object not found: automation {rule_id}", 404)
        return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})

    return engine
