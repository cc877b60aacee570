"""Template rendering per recipient: a 1 MB template dense in tags sent to 50 recipients.

Usage: .venv/bin/python bench/bench_templates.py [--old-copies N]

``templates-1mb``: the delivery path renders each recipient's copy with ``render_message`` (Subject,
TextPart, HTMLPart); the template is parsed once per process (``mailstack.templates.PARSED_TEMPLATES``,
emptied first so the one parse is counted) and every copy renders from the parsed tree. The value is
the seconds for all 50 copies. The baseline, in the same run, is the path before the cache: each copy
parses the template again, then renders it. It costs the same for every copy, so it is measured on
``--old-copies`` copies (default 3) and multiplied to 50: running it whole takes minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

try:
    import mailstack.templates  # noqa: F401
except ModuleNotFoundError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailstack.model import Address, MessageSpec
from mailstack.templates import DEFAULT_LIMITS, PARSED_TEMPLATES, RenderedMessage, render_message
from mailstack.templates._evaluator import _Renderer
from mailstack.templates._parser import parse

NAME = "templates-1mb"
RECIPIENTS = 50
OLD_COPIES = 3
TEMPLATE_CHARS = 1_000_000
UNIT = "<p>Hello {{var:name}}, {% if var:count > 1 %}{{var:count}} items{% else %}one item{% endif %}</p>\n"
VARIABLES = {"name": "Ana", "count": 3}


def _spec(html: str) -> MessageSpec:
    return MessageSpec(
        sender=Address("news@example.com"),
        to=tuple(Address(f"r{i}@example.net") for i in range(RECIPIENTS)),
        subject="Hello {{var:name}}",
        html=html,
        template_language=True,
        variables=VARIABLES,
    )


def _old_copy(spec: MessageSpec) -> str:
    """One copy as rendered before the cache: parse, then render, every time."""
    assert spec.html is not None
    out = []
    for part, is_html in ((spec.subject, False), (spec.html, True)):
        renderer = _Renderer(part, spec.variables, None, html=is_html, limits=DEFAULT_LIMITS)
        renderer.run(parse(part, DEFAULT_LIMITS))
        out.append("".join(renderer.out))
    return out[1]


def run(only: str | None = None, old_copies: int = OLD_COPIES) -> list[dict[str, Any]]:
    """Run the benchmark; returns one result dict."""
    if only not in (None, NAME):
        raise ValueError(f"unknown benchmark {only!r}")
    spec = _spec(UNIT * (TEMPLATE_CHARS // len(UNIT)))
    PARSED_TEMPLATES.clear()
    parses = PARSED_TEMPLATES.parses
    started = time.perf_counter()
    rendered = [render_message(spec) for _ in range(RECIPIENTS)]
    new_seconds = time.perf_counter() - started
    assert all(isinstance(r, RenderedMessage) for r in rendered)
    assert PARSED_TEMPLATES.parses - parses == 2, "the template was parsed more than once"
    started = time.perf_counter()
    old = [_old_copy(spec) for _ in range(old_copies)]
    old_per_copy = (time.perf_counter() - started) / old_copies
    first = rendered[0]
    assert isinstance(first, RenderedMessage) and old[0] == first.spec.html, "the two paths disagree"
    old_seconds = old_per_copy * RECIPIENTS
    return [
        {
            "name": NAME,
            "unit": f"s for {RECIPIENTS} copies of a {len(spec.html or '') // 1000} KB template",
            "value": round(new_seconds, 3),
            "baseline_name": f"parse-per-copy ({old_copies} copies timed, scaled to {RECIPIENTS})",
            "baseline_value": round(old_seconds, 3),
            "ratio": round(old_seconds / new_seconds, 2),
            "old_seconds_per_copy": round(old_per_copy, 3),
            "new_seconds_per_copy": round(new_seconds / RECIPIENTS, 4),
        }
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old-copies", type=int, default=OLD_COPIES, help="copies timed on the old path")
    args = parser.parse_args(argv)
    for result in run(None, args.old_copies):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
