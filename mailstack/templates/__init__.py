"""Mailjet's template language (Send API ``TemplateLanguage: true``), rendered by our own interpreter.

Public API:

* :func:`render` renders one template with ``Variables`` (``{{var:…}}``) and contact properties
  (``{{data:…}}``), HTML-escaping printed values when ``html=True``;
* :func:`render_message` renders the Subject, TextPart and HTMLPart of a
  :class:`~mailstack.model.MessageSpec` and returns a :class:`RenderedMessage` or a
  :class:`TemplateFailure` (input for TemplateErrorReporting / TemplateErrorDeliver);
* :class:`TemplateError` carries Mailjet's error text and the position in the template;
* :class:`Limits` / :data:`DEFAULT_LIMITS` bound loops, output, nesting and work.

The interpreter only reads plain data (mappings, sequences, strings, numbers, booleans, null) by
key and index: there is no attribute access and no way to reach Python objects.
"""

from __future__ import annotations

from mailstack.templates._errors import DEFAULT_LIMITS, Limits, TemplateError
from mailstack.templates._evaluator import render
from mailstack.templates._message import RenderedMessage, TemplateFailure, render_message

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "RenderedMessage",
    "TemplateError",
    "TemplateFailure",
    "render",
    "render_message",
]
