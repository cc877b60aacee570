"""Settings: Automation rules."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ._section import Section

__all__ = ["AutomationSettings"]


class AutomationSettings(Section):
    """Rules "when event E happens for campaign C, send template T"; polled this often."""

    poll_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
