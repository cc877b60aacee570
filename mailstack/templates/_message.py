"""Rendering the Subject, TextPart and HTMLPart of one Send API message."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mailstack.model import MessageSpec
from mailstack.templates._errors import DEFAULT_LIMITS, Limits, TemplateError
from mailstack.templates._evaluator import render

__all__ = ["RenderedMessage", "TemplateFailure", "render_message"]

Part = Literal["Subject", "TextPart", "HTMLPart"]
# Anything str.splitlines() or a mail parser could take as a line break, and other controls (tab is fine).
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """The message with its template parts rendered (or unchanged when TemplateLanguage is off)."""

    spec: MessageSpec


@dataclass(frozen=True, slots=True)
class TemplateFailure:
    """A template error in one part; ``spec`` is the message as submitted, not rendered."""

    spec: MessageSpec
    part: Part
    error: TemplateError

    @property
    def message(self) -> str:
        """The error text for the TemplateErrorReporting report, e.g. ``HTMLPart: expression …``."""
        return f"{self.part}: {self.error}"


def render_message(
    spec: MessageSpec,
    data: Mapping[str, Any] | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> RenderedMessage | TemplateFailure:
    """Render one message's Subject, TextPart and HTMLPart with its ``Variables``; pure, never raises.

    * ``template_language`` false: ``RenderedMessage(spec)`` with ``spec`` unchanged — the parts are
      sent as written, like Mailjet does when TemplateLanguage is not set.
    * every part renders: ``RenderedMessage`` whose spec is ``dataclasses.replace(spec, subject=…,
      text=…, html=…, template_language=False)``. HTMLPart is rendered with HTML escaping, Subject and
      TextPart without; absent parts (None) stay None. ``template_language`` is cleared so the
      rendered text is never rendered a second time (a variable holding ``{{…}}`` must stay text).
    * a part fails (syntax, undefined variable without default, a limit, or a rendered Subject
      holding a line break or control character): ``TemplateFailure`` naming the first failing part
      (Subject, then TextPart, then HTMLPart) with the :class:`TemplateError`; ``failure.message`` is
      the text to send to TemplateErrorReporting, and ``failure.spec`` the unrendered message. What
      to do then — drop the message, or deliver it anyway when TemplateErrorDeliver is true — is
      the caller's decision.
    """
    if not spec.template_language:
        return RenderedMessage(spec)
    parts: list[tuple[Part, str | None, bool]] = [
        ("Subject", spec.subject, False),
        ("TextPart", spec.text, False),
        ("HTMLPart", spec.html, True),
    ]
    rendered: dict[Part, str | None] = {}
    for part, template, is_html in parts:
        if template is None:
            rendered[part] = None
            continue
        try:
            rendered[part] = render(template, spec.variables, data=data, html=is_html, limits=limits)
        except TemplateError as exc:
            return TemplateFailure(spec, part, exc)
    subject = rendered["Subject"] or ""
    if _HEADER_UNSAFE.search(subject):
        error = TemplateError("rendered Subject contains a line break or control character")
        return TemplateFailure(spec, "Subject", error)
    return RenderedMessage(
        dataclasses.replace(
            spec,
            subject=subject,
            text=rendered["TextPart"],
            html=rendered["HTMLPart"],
            template_language=False,
        )
    )
