"""The template error type and the resource limits every rendering runs under."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits", "TemplateError", "near"]


class TemplateError(Exception):
    """A template could not be rendered.

    ``message`` is the text Mailjet would report (its documented wording where it has one, e.g.
    ``expression parsing error ## Unknown identifier: var:day ## near ## {{var:day ##``); ``offset``,
    ``line`` and ``column`` (1-based) locate the problem in the template when known. ``str()`` gives
    the message followed by the position.
    """

    def __init__(self, message: str, *, source: str | None = None, offset: int | None = None) -> None:
        self.message = message
        self.offset = offset
        self.line: int | None = None
        self.column: int | None = None
        if source is not None and offset is not None:
            offset = max(0, min(offset, len(source)))
            self.line = source.count("\n", 0, offset) + 1
            self.column = offset - (source.rfind("\n", 0, offset) + 1) + 1
        super().__init__(message)

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"{self.message} (line {self.line}, column {self.column})"


def near(source: str, start: int, end: int, *, limit: int = 60) -> str:
    """The template text Mailjet quotes after ``near ##``: from ``start`` to ``end``, kept short."""
    snippet = source[start:end]
    return snippet if len(snippet) <= limit else snippet[:limit] + "..."


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one rendering; exceeding any of them is a :class:`TemplateError`, never a hang.

    * ``max_template_chars`` — the template source itself;
    * ``max_output_bytes`` — the rendered text, UTF-8 encoded;
    * ``max_loop_iterations`` — iterations of all ``for`` loops together;
    * ``max_depth`` — nesting of ``if``/``for`` blocks, and separately of expressions (parentheses,
      function calls, indexes, unary operators);
    * ``max_steps`` — expression nodes evaluated (bounds CPU time independently of loops);
    * ``max_string_chars`` — any single string value computed (e.g. by repeated concatenation);
    * ``max_work_chars`` — characters produced by string operations in total.
    """

    max_template_chars: int = 1_000_000
    max_output_bytes: int = 1_000_000
    max_loop_iterations: int = 10_000
    max_depth: int = 20
    max_steps: int = 1_000_000
    max_string_chars: int = 1_000_000
    max_work_chars: int = 20_000_000


DEFAULT_LIMITS = Limits()
