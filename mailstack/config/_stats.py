"""Settings: The statistics aggregator."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ._section import Section

__all__ = ["StatsSettings"]


class StatsSettings(Section):
    """The statistics aggregator that folds events into rollups."""

    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    # Classify custom domains by their MX (Google Workspace, Microsoft 365, Yahoo); needs DNS.
    mx_lookup: bool = True
