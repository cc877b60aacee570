"""Bounce and complaint classification: what a returned message says about each recipient.

Public API:

* :func:`classify` reads one raw message (an RFC 3464 DSN, an RFC 5965 complaint, a provider's or an
  MTA's non-standard bounce, an auto-reply) and returns one :class:`BounceResult` per recipient, with a
  category (``hard``/``soft``/``complaint``/``not_bounce``) and a reason in Sisimai's vocabulary;
* :func:`category_of` maps a reason to its category;
* :class:`RuleSet`, :func:`phrase_tables`, :func:`phrase_in`, :func:`evidence_text` and ``SOURCES``
  let a measurement switch rules off (leave-one-family-out, ``bench/bench_classify.py``).

The classifier is pure (no I/O, no configuration) and never raises on bad input.
"""

from __future__ import annotations

from mailstack.bounce_classify._classify import classify, evidence_text
from mailstack.bounce_classify._reasons import RuleSet, phrase_in, phrase_tables, standard_phrases
from mailstack.bounce_classify._types import BounceResult, Category, category_of
from mailstack.bounce_classify._vendors import SOURCES

__all__ = [
    "SOURCES",
    "BounceResult",
    "Category",
    "RuleSet",
    "category_of",
    "classify",
    "evidence_text",
    "phrase_in",
    "phrase_tables",
    "standard_phrases",
]
