"""Mailjet's template language (Send API ``TemplateLanguage: true``), rendered by our own interpreter.

Public API:

* :func:`render` renders one template with ``Variables`` (``{{var:…}}``) and contact properties
  (``{{data:…}}``), HTML-escaping printed values when ``html=True``;
* :func:`render_message` renders the Subject, TextPart and HTMLPart of a
  :class:`~mailstack.model.MessageSpec` and returns a :class:`RenderedMessage` or a
  :class:`TemplateFailure` (input for TemplateErrorReporting / TemplateErrorDeliver);
* :class:`TemplateError` carries Mailjet's error text and the position in the template;
* :class:`Limits` / :data:`DEFAULT_LIMITS` bound loops, output, nesting and work of one rendering;
* :func:`render_work` / :data:`MAX_RENDER_WORK` estimate and bound the rendering a whole Send API
  request asks for (its templates' size times their recipients), checked at acceptance.

A template is parsed once per process and source text (:data:`PARSED_TEMPLATES`, bounded): every
recipient's copy of a message renders from the same parsed tree.

The interpreter only reads plain data (mappings, sequences, strings, numbers, booleans, null) by
key and index: there is no attribute access and no way to reach Python objects.
"""

from __future__ import annotations

from mailstack.templates._budget import MAX_RENDER_WORK, PARSE_WEIGHT, render_work
from mailstack.templates._compiled import CACHED_TEMPLATE_CHARS, PARSED_TEMPLATES, TemplateCache
from mailstack.templates._errors import DEFAULT_LIMITS, Limits, TemplateError
from mailstack.templates._evaluator import render
from mailstack.templates._message import RenderedMessage, TemplateFailure, render_message

__all__ = [
    "CACHED_TEMPLATE_CHARS",
    "DEFAULT_LIMITS",
    "MAX_RENDER_WORK",
    "PARSED_TEMPLATES",
    "PARSE_WEIGHT",
    "Limits",
    "RenderedMessage",
    "TemplateCache",
    "TemplateError",
    "TemplateFailure",
    "render",
    "render_message",
    "render_work",
]
