"""The composer's exception type (kept in its own module so every other module can import it)."""

from __future__ import annotations

__all__ = ["ComposeError"]


class ComposeError(ValueError):
    """The message cannot be composed safely; the message names the offending field."""
