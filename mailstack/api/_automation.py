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
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, Security
from fastapi.responses import JSONResponse
from sqlalchemy import select

from mailstack.automation import (
    TRIGGER_EVENTS,
    SendFailedError,
    create_rule,
    delete_rule,
    list_rules,
    list_runs,
    recipient_properties,
)
from mailstack.runtime import Runtime
from mailstack.storage import ApiKeyRecord, api_key_record, reading
from mailstack.storage.schema import api_keys

from ._accept import accept_send_request
from ._auth import scope
from ._deps import MAX_ID, JsonDep, RuntimeDep, id_path
from ._errors import ERROR_RESPONSES, ApiError, error_responses
from ._sendv31 import MessageErrors, RequestError, parse_send_request

__all__ = ["make_sender", "router"]

_FIELDS = {"Name", "EventType", "CustomCampaign", "Template"}
_PROBE = {"Email": "recipient@example.com"}  # stands in for the recipient while validating a template
router = APIRouter(tags=["Automation"], responses=ERROR_RESPONSES)
SendKey = Annotated[ApiKeyRecord, Security(scope("send"))]
RuleId = Annotated[int, id_path("The rule's ID")]


def _error(message: str, errors: list[Any] | None = None) -> ApiError:
    if errors:
        return ApiError(400, message, Errors=errors)
    return ApiError(400, message)


def _api_key(runtime: Runtime, api_key_id: int) -> ApiKeyRecord:
    with reading(runtime.engine) as conn:
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


@router.get("/api/v1/automations", summary="Your automation rules")
def list_route(api_key: SendKey, runtime: RuntimeDep) -> Response:
    with reading(runtime.engine) as conn:
        data = [rule.to_json() for rule in list_rules(conn, api_key.id)]
    return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})


@router.post(
    "/api/v1/automations",
    summary='Add a rule: "when EventType happens for CustomCampaign, send Template to that recipient"',
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["EventType", "CustomCampaign", "Template"],
                        "additionalProperties": False,
                        "properties": {
                            "Name": {"type": "string", "maxLength": 200},
                            "EventType": {"type": "string", "enum": list(TRIGGER_EVENTS)},
                            "CustomCampaign": {"type": "string", "minLength": 1, "maxLength": 255},
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
def create_route(api_key: SendKey, body: JsonDep, runtime: RuntimeDep) -> Response:
    fields = body.value
    if not isinstance(fields, dict):
        raise _error("The body must be a JSON object.")
    unknown = set(fields) - _FIELDS
    if unknown:
        raise _error(f"Unknown properties: {', '.join(sorted(unknown))}.")
    event_type = fields.get("EventType")
    if event_type not in TRIGGER_EVENTS:
        raise _error(f"EventType must be one of {', '.join(TRIGGER_EVENTS)}.")
    campaign = fields.get("CustomCampaign")
    if not isinstance(campaign, str) or not 0 < len(campaign) <= 255:
        raise _error(
            "CustomCampaign must name the campaign whose events trigger the rule (1-255 characters)."
        )
    name = fields.get("Name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise _error("Name must be at most 200 characters.")
    template = fields.get("Template")
    problem, errors = _check_template(runtime, template)
    if problem:
        raise _error(problem, errors)
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
    return JSONResponse({"Count": 1, "Data": [rule.to_json()], "Total": 1}, 201)


@router.delete(
    "/api/v1/automations/{rule_id}",
    summary="Remove a rule",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
def delete_route(rule_id: RuleId, api_key: SendKey, runtime: RuntimeDep) -> Response:
    with runtime.engine.begin() as conn:
        removed = delete_rule(conn, api_key.id, rule_id)
    if not removed:
        raise ApiError(404, f"Object not found: automation {rule_id}")
    return Response(status_code=204)


@router.get(
    "/api/v1/automations/{rule_id}/runs",
    summary="A rule's runs, newest first: the follow-up sent, or why it was refused",
    responses=error_responses(404),
)
def runs_route(
    rule_id: RuleId,
    api_key: SendKey,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(alias="Limit", ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(alias="Offset", ge=0, le=MAX_ID)] = 0,
) -> Response:
    # Errors are stored sealed (they quote the recipient); opened here for the rule's owner.
    with reading(runtime.engine) as conn:
        runs = list_runs(conn, runtime.vault, api_key.id, rule_id, limit=limit, offset=offset)
    if runs is None:
        raise ApiError(404, f"Object not found: automation {rule_id}")
    data = [run.to_json() for run in runs]
    return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})
