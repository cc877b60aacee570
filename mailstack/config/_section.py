"""The base of every settings section: unknown keys are errors, values never change after loading."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict

__all__ = ["Section", "networks"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def networks(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    """``values`` if each is an IP network; a ValueError naming ``what`` otherwise."""
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an IP network (e.g. 10.0.0.0/8)") from None
    return values
