"""Bounce and complaint classification: what a returned message says about each recipient.

Public API:

* :func:`classify` reads one raw message (an RFC 3464 DSN, an RFC 5965 complaint, a provider's or an
  MTA's non-standard bounce, an auto-reply) and returns one :class:`BounceResult` per recipient, with a
  category (``hard``/``soft``/``complaint``/``not_bounce``) and a reason in Sisimai's vocabulary;
* :func:`category_of` maps a reason to its category.

The classifier is pure (no I/O, no configuration) and never raises on bad input.
"""

from __future__ import annotations

from mailstack.bounce_classify._classify import classify
from mailstack.bounce_classify._types import BounceResult, Category, category_of

__all__ = ["BounceResult", "Category", "category_of", "classify"]
