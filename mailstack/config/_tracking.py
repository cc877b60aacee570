"""Settings: Open and click tracking."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from ._section import Section, networks

__all__ = ["TrackingSettings"]


class TrackingSettings(Section):
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
    def _checknetworks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return networks(value, "tracking networks")
