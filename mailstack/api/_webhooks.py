"""Webhook routes, Mailjet-compatible: ``/v3/REST/eventcallbackurl`` (list, create, show, delete), plus the
delivery log of an endpoint at ``/v3/REST/eventcallbackurl/{id}/deliveries``; the dispatcher runs with
the app.

Creating an endpoint answers with ``SigningSecret`` (hex), shown this once: receivers check the
``X-Mailstack-Signature`` header with it (see :func:`mailstack.webhooks.verify`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, Security
from fastapi.responses import JSONResponse
from sqlalchemy import select

from mailstack.storage import ApiKeyRecord, reading
from mailstack.storage.schema import webhook_endpoints
from mailstack.webhooks import (
    EVENT_TYPES,
    DestinationRefusedError,
    check_destination,
    create_endpoint,
    delete_endpoint,
    get_endpoint,
    list_deliveries,
    list_endpoints,
)

from ._auth import scope
from ._deps import JsonDep, RuntimeDep, id_path
from ._errors import ERROR_RESPONSES, ApiError, error_responses

__all__ = ["router"]

_FIELDS = {"EventType", "Url", "Version", "Status", "IsBackup"}
router = APIRouter(tags=["Webhooks"], responses=ERROR_RESPONSES)
WebhooksKey = Annotated[ApiKeyRecord, Security(scope("webhooks"))]
EndpointId = Annotated[int, id_path("The endpoint's ID")]


def _parse(body: object) -> tuple[str, dict[str, Any]]:
    if not isinstance(body, dict):
        return "The body must be a JSON object.", {}
    unknown = set(body) - _FIELDS
    if unknown:
        return f"Unknown properties: {', '.join(sorted(unknown))}.", {}
    event_type = body.get("EventType")
    if event_type not in EVENT_TYPES:
        return f"EventType must be one of {', '.join(EVENT_TYPES)}.", {}
    url = body.get("Url")
    if not isinstance(url, str) or not url:
        return "Url is required.", {}
    version = body.get("Version", 1)
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if version not in (1, 2):
        return "Version must be 1 (one event per request) or 2 (grouped).", {}
    status = body.get("Status", "alive")
    if status not in ("alive", "dead"):
        return 'Status must be "alive" or "dead".', {}
    is_backup = body.get("IsBackup", False)
    if not isinstance(is_backup, bool):
        return "IsBackup must be true or false.", {}
    return "", {
        "event_type": event_type,
        "url": url,
        "version": version,
        "status": status,
        "is_backup": is_backup,
    }


def _not_found(endpoint_id: int) -> ApiError:
    return ApiError(404, f"Object not found: eventcallbackurl {endpoint_id}")


@router.get("/v3/REST/eventcallbackurl", summary="Your webhook endpoints")
def list_route(api_key: WebhooksKey, runtime: RuntimeDep) -> Response:
    with reading(runtime.engine) as conn:
        data = [endpoint.to_json() for endpoint in list_endpoints(conn, api_key.id)]
    return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})


@router.post(
    "/v3/REST/eventcallbackurl",
    summary="Add a webhook endpoint for one event type (Mailjet's Event API)",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["EventType", "Url"],
                        "additionalProperties": False,
                        "properties": {
                            "EventType": {"type": "string", "enum": list(EVENT_TYPES)},
                            "Url": {"type": "string", "format": "uri"},
                            "Version": {"type": "integer", "enum": [1, 2]},
                            "Status": {"type": "string", "enum": ["alive", "dead"]},
                            "IsBackup": {"type": "boolean"},
                        },
                    }
                }
            },
        }
    },
)
def create_route(api_key: WebhooksKey, body: JsonDep, runtime: RuntimeDep) -> Response:
    problem, fields = _parse(body.value)
    if problem:
        raise ApiError(400, problem)
    try:
        check_destination(fields["url"], runtime.settings.webhooks.allow_networks)
    except DestinationRefusedError as exc:
        raise ApiError(400, f"Url refused: {exc}.") from None
    with runtime.engine.begin() as conn:
        taken = conn.execute(
            select(webhook_endpoints.c.id).where(
                webhook_endpoints.c.api_key_id == api_key.id,
                webhook_endpoints.c.event_type == fields["event_type"],
                webhook_endpoints.c.is_backup.is_(fields["is_backup"]),
            )
        ).first()
        if taken is not None:
            raise ApiError(
                400, f"A callback URL for {fields['event_type']} events already exists (ID {taken.id})."
            )
        record, secret = create_endpoint(conn, runtime.keyring, api_key_id=api_key.id, **fields)
    data = {**record.to_json(), "SigningSecret": secret}
    return JSONResponse({"Count": 1, "Data": [data], "Total": 1}, 201)


@router.get("/v3/REST/eventcallbackurl/{endpoint_id}", summary="One endpoint", responses=error_responses(404))
def show_route(endpoint_id: EndpointId, api_key: WebhooksKey, runtime: RuntimeDep) -> Response:
    with reading(runtime.engine) as conn:
        record = get_endpoint(conn, api_key.id, endpoint_id)
    if record is None:
        raise _not_found(endpoint_id)
    return JSONResponse({"Count": 1, "Data": [record.to_json()], "Total": 1})


@router.delete(
    "/v3/REST/eventcallbackurl/{endpoint_id}",
    summary="Remove an endpoint",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
)
def delete_route(endpoint_id: EndpointId, api_key: WebhooksKey, runtime: RuntimeDep) -> Response:
    with runtime.engine.begin() as conn:
        removed = delete_endpoint(conn, api_key.id, endpoint_id)
    if not removed:
        raise _not_found(endpoint_id)
    return Response(status_code=204)


@router.get(
    "/v3/REST/eventcallbackurl/{endpoint_id}/deliveries",
    summary="The delivery log of an endpoint, newest first",
    responses=error_responses(404),
)
def deliveries_route(
    endpoint_id: EndpointId,
    api_key: WebhooksKey,
    runtime: RuntimeDep,
    limit: Annotated[int | None, Query(alias="Limit", ge=1, le=1000)] = None,
    lower_limit: Annotated[int | None, Query(alias="limit", ge=1, le=1000, include_in_schema=False)] = None,
) -> Response:
    count = limit or lower_limit or 50
    with reading(runtime.engine) as conn:
        if get_endpoint(conn, api_key.id, endpoint_id) is None:
            raise _not_found(endpoint_id)
        data = [d.to_json() for d in list_deliveries(conn, endpoint_id, limit=count)]
    return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})
