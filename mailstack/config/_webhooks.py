"""Settings: Event API webhooks."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from ._section import Section, networks

__all__ = ["WebhookSettings"]


class WebhookSettings(Section):
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
    def _checknetworks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return networks(value, "webhooks.allow_networks")
