"""Statistics routes, Mailjet-compatible: ``/v3/REST/statcounters``, ``/v3/REST/statistics/recipient-esp``
and ``/v3/REST/statistics/link-click``; the aggregator runs with the app.

Campaigns are named by their ``CustomCampaign`` (Mailjet's numeric campaign ids do not exist here): pass
it as ``SourceId`` (statcounters) or ``CampaignId`` (recipient-esp, link-click).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from mailstack.providers import ProviderClassifier, dns_mx_resolver
from mailstack.service import Runtime
from mailstack.stats import (
    DAY,
    HOUR,
    Aggregator,
    StatsQuery,
    counters,
    counters_by_provider,
    counters_by_slot,
    esp_json,
    link_clicks,
    statcounter_json,
)
from mailstack.storage import ApiKeyRecord

from ._auth import Authenticator, authenticate_request
from ._lifespan import run_in_background

__all__ = ["StatsParamError", "parse_statcounters", "register_stats"]

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
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StatsParamError(
            f"{name} must be a Unix timestamp or an ISO 8601 date-time: {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


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
    start = parse_timestamp(params["fromts"], "FromTS") if params.get("fromts") else None
    end = parse_timestamp(params["tots"], "ToTS") if params.get("tots") else None
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


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"ErrorInfo": "", "ErrorMessage": message, "StatusCode": status}, status)


def _listing(data: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"Count": len(data), "Data": data, "Total": len(data)})


def register_stats(app: FastAPI, runtime: Runtime, auth: Authenticator) -> Aggregator:
    """Add the statistics routes; the aggregator thread starts and stops with the app."""
    settings = runtime.settings
    classifier = ProviderClassifier(resolver=dns_mx_resolver() if settings.stats.mx_lookup else None)
    aggregator = Aggregator(
        runtime.store,
        batch_size=settings.stats.batch_size,
        providers=classifier.classify,
        poll_seconds=settings.stats.poll_seconds,
        sent_is_delivery=not settings.delivery.relay,
    )
    run_in_background(app, aggregator.run, name="stats-aggregator")
    app.state.aggregator = aggregator

    @app.get("/v3/REST/statcounters", tags=["Statistics"], summary="Key counters (Mailjet's /statcounters)")
    async def statcounters(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "read")
        if isinstance(api_key, Response):
            return api_key
        try:
            spec, resolution, source_id = parse_statcounters(_params(request), api_key)
        except StatsParamError as exc:
            return _error(str(exc))

        def load() -> list[dict[str, Any]]:
            with runtime.engine.connect() as conn:
                if resolution == "lifetime":
                    totals = counters(conn, spec)
                    return [
                        statcounter_json(totals, api_key_id=api_key.id, source_id=source_id, timeslice=None)
                    ]
                series = counters_by_slot(conn, spec, resolution)
            return [
                statcounter_json(values, api_key_id=api_key.id, source_id=source_id, timeslice=slot)
                for slot, values in series
            ]

        return _listing(await run_in_threadpool(load))

    @app.get(
        "/v3/REST/statistics/recipient-esp",
        tags=["Statistics"],
        summary="Counters per mailbox provider (Mailjet's /statistics/recipient-esp)",
    )
    async def recipient_esp(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "read")
        if isinstance(api_key, Response):
            return api_key
        params = _params(request)
        try:
            start = parse_timestamp(params["fromts"], "FromTS") if params.get("fromts") else None
            end = parse_timestamp(params["tots"], "ToTS") if params.get("tots") else None
        except StatsParamError as exc:
            return _error(str(exc))
        spec = StatsQuery(api_key.id, params.get("campaignid", "")[:255], "message", start, end)

        def load() -> list[dict[str, Any]]:
            with runtime.engine.connect() as conn:
                per_provider = counters_by_provider(conn, spec)
            return [esp_json(provider, values) for provider, values in per_provider.items()]

        return _listing(await run_in_threadpool(load))

    @app.get(
        "/v3/REST/statistics/link-click",
        tags=["Statistics"],
        summary="Clicks per link (Mailjet's /statistics/link-click)",
    )
    async def link_click(request: Request) -> Response:
        api_key = await authenticate_request(auth, request, "read")
        if isinstance(api_key, Response):
            return api_key
        campaign = _params(request).get("campaignid", "")[:255]

        def load() -> list[dict[str, Any]]:
            with runtime.engine.connect() as conn:
                return link_clicks(conn, api_key.id, campaign, store=runtime.store)

        return _listing(await run_in_threadpool(load))

    return aggregator
