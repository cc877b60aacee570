"""Statistics routes, Mailjet-compatible: ``/v3/REST/statcounters``, ``/v3/REST/statistics/recipient-esp``
and ``/v3/REST/statistics/link-click``; the aggregator runs with the app.

Campaigns are named by their ``CustomCampaign`` (Mailjet's numeric campaign ids do not exist here): pass
it as ``SourceId`` (statcounters) or ``CampaignId`` (recipient-esp, link-click).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response, Security
from fastapi.responses import JSONResponse

from mailstack.stats import (
    DAY,
    HOUR,
    StatsQuery,
    counters,
    counters_by_provider,
    counters_by_slot,
    esp_json,
    link_clicks,
    statcounter_json,
)
from mailstack.storage import LAST_TIMESTAMP, ApiKeyRecord, reading

from ._auth import scope
from ._deps import RuntimeDep
from ._errors import ERROR_RESPONSES, ApiError

__all__ = [
    "TIMESTAMP_SCHEMA",
    "StatsParamError",
    "parse_statcounters",
    "parse_timestamp",
    "router",
]

# Longest ranges a time series may cover (the number of slots in one answer stays bounded).
MAX_HOURS = 31 * 24
MAX_DAYS = 3 * 366
_SOURCES = {"apikey": "APIKey", "campaign": "Campaign", "list": "List"}
_TIMINGS = {"message": "message", "event": "event"}
_RESOLUTIONS = {"lifetime": "lifetime", "day": "day", "hour": "hour"}


class StatsParamError(ValueError):
    """A query parameter that cannot be honoured; the message says which and why."""


def _params(request: Request) -> dict[str, str]:
    # Mailjet's filters are case-insensitive (SourceId, SourceID and sourceid all work).
    return {key.lower(): value for key, value in request.query_params.items()}


def parse_timestamp(value: str, name: str) -> int:
    """Unix seconds, or an ISO 8601 / RFC 3339 date-time (UTC unless it says otherwise)."""
    text = value.strip()
    problem = f"{name} must be a Unix timestamp or an ISO 8601 date-time up to year 9999: {value[:64]!r}"
    if text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"
        seconds = int(digits) if len(digits) <= 20 else int(LAST_TIMESTAMP) + 1  # int() of 5000 digits raises
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise StatsParamError(problem) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = int(parsed.timestamp())
    if not 0 <= seconds <= int(LAST_TIMESTAMP):
        raise StatsParamError(problem)
    return seconds


def _choice(params: dict[str, str], name: str, choices: dict[str, str], default: str | None = None) -> str:
    value = params.get(name.lower())
    if value is None or value == "":
        if default is None:
            raise StatsParamError(f"{name} is required (one of {', '.join(sorted(set(choices.values())))}).")
        return default
    found = choices.get(value.lower())
    if found is None:
        raise StatsParamError(
            f"{name} {value!r} is not supported (one of {', '.join(sorted(set(choices.values())))})."
        )
    return found


def parse_statcounters(params: dict[str, str], api_key: ApiKeyRecord) -> tuple[StatsQuery, str, str | int]:
    """The query, the resolution and the SourceID to answer with; raises :class:`StatsParamError`."""
    source = _choice(params, "CounterSource", _SOURCES)
    timing = _choice(params, "CounterTiming", _TIMINGS)
    resolution = _choice(params, "CounterResolution", _RESOLUTIONS)
    source_id = params.get("sourceid", "")
    campaign = ""
    answer_id: str | int = api_key.id
    if source == "List":
        raise StatsParamError("CounterSource List is not supported: mailstack has no contact lists.")
    if source == "Campaign":
        if not source_id:
            raise StatsParamError("SourceId (the CustomCampaign) is required with CounterSource=Campaign.")
        campaign = source_id[:255]
        answer_id = campaign
    elif source_id and source_id not in (str(api_key.id), api_key.public_key):
        raise StatsParamError("SourceId must be your own API key with CounterSource=APIKey.")
    start = parse_timestamp(params["fromts"], "FromTS") if "fromts" in params else None
    end = parse_timestamp(params["tots"], "ToTS") if "tots" in params else None
    if resolution != "lifetime":
        if start is None or end is None:
            raise StatsParamError(
                f"FromTS and ToTS are required with CounterResolution={resolution.title()}."
            )
        width, limit = (HOUR, MAX_HOURS) if resolution == "hour" else (DAY, MAX_DAYS)
        if (end - start) / width > limit:
            raise StatsParamError(
                f"The range is too long for CounterResolution={resolution.title()}: at most {limit} slots."
            )
    if start is not None and end is not None and end <= start:
        raise StatsParamError("ToTS must be after FromTS.")
    return StatsQuery(api_key.id, campaign, timing, start, end), resolution, answer_id


def _listing(data: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})


router = APIRouter(tags=["Statistics"], responses=ERROR_RESPONSES)
ReadKey = Annotated[ApiKeyRecord, Security(scope("read"))]


TIMESTAMP_SCHEMA: dict[str, Any] = {
    "type": "integer",
    "minimum": 0,
    "maximum": int(LAST_TIMESTAMP),
    "description": "Unix seconds (an ISO 8601 date-time is accepted too)",
}
_PARAMETERS: dict[str, tuple[bool, dict[str, Any]]] = {
    "CounterSource": (True, {"type": "string", "enum": ["APIKey", "Campaign"]}),
    "CounterTiming": (True, {"type": "string", "enum": ["Message", "Event"]}),
    "CounterResolution": (True, {"type": "string", "enum": ["Lifetime", "Day", "Hour"]}),
    "SourceId": (False, {"type": "string", "description": "The CustomCampaign with CounterSource=Campaign"}),
    "CampaignId": (False, {"type": "string", "description": "A CustomCampaign"}),
    "FromTS": (False, TIMESTAMP_SCHEMA),
    "ToTS": (False, TIMESTAMP_SCHEMA),
}


def _documented(*names: str) -> dict[str, Any]:
    # Mailjet's filters are matched case-insensitively, so they are read from the query string by hand
    # and only documented here.
    return {
        "parameters": [
            {"name": name, "in": "query", "required": _PARAMETERS[name][0], "schema": _PARAMETERS[name][1]}
            for name in names
        ]
    }


@router.get(
    "/v3/REST/statcounters",
    summary="Key counters (Mailjet's /statcounters)",
    openapi_extra=_documented(
        "CounterSource", "CounterTiming", "CounterResolution", "SourceId", "FromTS", "ToTS"
    ),
)
def statcounters(request: Request, api_key: ReadKey, runtime: RuntimeDep) -> Response:
    try:
        spec, resolution, source_id = parse_statcounters(_params(request), api_key)
    except StatsParamError as exc:
        raise ApiError(400, str(exc)) from None
    with reading(runtime.engine) as conn:
        if resolution == "lifetime":
            totals = counters(conn, spec)
            return _listing(
                [statcounter_json(totals, api_key_id=api_key.id, source_id=source_id, timeslice=None)]
            )
        series = counters_by_slot(conn, spec, resolution)
    return _listing(
        [
            statcounter_json(values, api_key_id=api_key.id, source_id=source_id, timeslice=slot)
            for slot, values in series
        ]
    )


@router.get(
    "/v3/REST/statistics/recipient-esp",
    summary="Counters per mailbox provider (Mailjet's /statistics/recipient-esp)",
    openapi_extra=_documented("CampaignId", "FromTS", "ToTS"),
)
def recipient_esp(request: Request, api_key: ReadKey, runtime: RuntimeDep) -> Response:
    params = _params(request)
    try:
        start = parse_timestamp(params["fromts"], "FromTS") if "fromts" in params else None
        end = parse_timestamp(params["tots"], "ToTS") if "tots" in params else None
    except StatsParamError as exc:
        raise ApiError(400, str(exc)) from None
    spec = StatsQuery(api_key.id, params.get("campaignid", "")[:255], "message", start, end)
    with reading(runtime.engine) as conn:
        per_provider = counters_by_provider(conn, spec)
    return _listing([esp_json(provider, values) for provider, values in per_provider.items()])


@router.get(
    "/v3/REST/statistics/link-click",
    summary="Clicks per link (Mailjet's /statistics/link-click)",
    openapi_extra=_documented("CampaignId"),
)
def link_click(request: Request, api_key: ReadKey, runtime: RuntimeDep) -> Response:
    campaign = _params(request).get("campaignid", "")[:255]
    with reading(runtime.engine) as conn:
        return _listing(link_clicks(conn, api_key.id, campaign, store=runtime.store))
