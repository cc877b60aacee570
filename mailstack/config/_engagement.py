"""Settings of the engagement features: tracking, statistics, webhooks, automation and the dashboard.

Kept apart from ``_settings`` so that these sections evolve without touching the core ones. Every default
is the safe one: private webhook destinations are refused, sessions are short, cookies are HttpOnly.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "AutomationSettings",
    "DashboardSettings",
    "StatsSettings",
    "TrackingSettings",
    "WebhookSettings",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _networks(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return values


class TrackingSettings(_Section):
    """Open and click tracking. ``opens``/``clicks`` are the account default ("account_default").

    Mailjet tracks opens and clicks unless told otherwise, so the default is on for both; a message's
    ``TrackOpens``/``TrackClicks`` of "disabled" or "enabled" always wins.
    """

    opens: bool = True
    clicks: bool = True
    # Tracking requests are recorded through an in-memory queue flushed in batches, never inline.
    queue_size: Annotated[int, Field(ge=100, le=10_000_000)] = 100_000
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    flush_seconds: Annotated[float, Field(gt=0, le=60)] = 0.25
    # Extra networks whose opens are machine opens (privacy proxies) or whose clicks are link scanners.
    proxy_networks: tuple[str, ...] = ()
    scanner_networks: tuple[str, ...] = ()

    @field_validator("proxy_networks", "scanner_networks")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _networks(value, "tracking networks")


class StatsSettings(_Section):
    """The statistics aggregator that folds events into rollups."""

    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    # Classify custom domains by their MX (Google Workspace, Microsoft 365, Yahoo); needs DNS.
    mx_lookup: bool = True


class WebhookSettings(_Section):
    """Event API webhooks. Private, loopback, link-local and metadata destinations are refused unless
    their network is listed in ``allow_networks`` (e.g. ``["10.1.2.0/24"]`` for an internal receiver)."""

    allow_networks: tuple[str, ...] = ()
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10.0
    retry_base_seconds: Annotated[float, Field(gt=0)] = 30.0
    retry_max_seconds: Annotated[float, Field(gt=0)] = 3600.0
    give_up_after_seconds: Annotated[float, Field(gt=0)] = 24 * 3600.0
    max_group: Annotated[int, Field(ge=1, le=10_000)] = 500

    @field_validator("allow_networks")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _networks(value, "webhooks.allow_networks")


class AutomationSettings(_Section):
    """Rules "when event E happens for campaign C, send template T"; polled this often."""

    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5


class DashboardSettings(_Section):
    """The web dashboard at ``/dashboard``; users are created with ``mailstack dashboard user-add``."""

    enabled: bool = True
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
