"""How much template rendering one Send API request may ask for, estimated before anything is stored.

Each recipient's copy of a message is rendered on its own, so a request's render work grows with its
templates' size times its recipients. The estimate, in characters:

* every recipient's copy of a message with ``TemplateLanguage`` counts the characters of its Subject,
  TextPart and HTMLPart (rendering walks the whole parsed template);
* every distinct template text in the request counts :data:`PARSE_WEIGHT` times its characters once,
  for parsing it (measured: parsing costs ~25 renderings of the parsed tree for a template dense in
  tags; copies share one parse, see :mod:`._compiled`).

A request over :data:`MAX_RENDER_WORK` is refused whole at acceptance. Worst case (every character a
tag) the budget is ~14 s of one core; e.g. a dense 1 MB template to 50 recipients (75 M) passes, two
of them in one request do not; a 100 KB template to 50 recipients in each of 10 messages (75 M) passes.
Loops are not in the estimate: each copy's own limits bound them (:class:`~._errors.Limits`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from mailstack.model import MessageSpec

__all__ = ["MAX_RENDER_WORK", "PARSE_WEIGHT", "render_work"]

MAX_RENDER_WORK: Final = 100_000_000
PARSE_WEIGHT: Final = 25


def render_work(specs: Iterable[MessageSpec]) -> int:
    """The estimated render work of these messages (see the module's documentation)."""
    work = 0
    distinct: set[str] = set()
    for spec in specs:
        if not spec.template_language or spec.raw is not None:
            continue
        copies = len(spec.to) + len(spec.cc) + len(spec.bcc)
        for part in (spec.subject, spec.text, spec.html):
            if part:
                work += len(part) * copies
                distinct.add(part)
    return work + PARSE_WEIGHT * sum(len(part) for part in distinct)
