"""Settings: The web dashboard."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ._section import Section

__all__ = ["DashboardSettings"]


class DashboardSettings(Section):
    """The web dashboard at ``/dashboard``; users are created with ``mailstack dashboard user-add``."""

    enabled: bool = True
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
