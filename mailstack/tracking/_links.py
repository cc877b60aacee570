"""HTML rewriting: tracked links and the open pixel.

The rewriter is deliberately conservative: it touches only the ``href`` of ``<a>`` and ``<area>`` tags
whose value is an absolute http(s) URL, leaves everything else byte for byte, and never tracks links it
cannot rebuild exactly (template placeholders, opted-out links, absurdly long URLs).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_TRACKED_URL", "TrackedLink", "insert_pixel", "rewrite_links"]

# Longer URLs stay untracked: their token would not fit the signer's limit and some clients cut long URLs.
MAX_TRACKED_URL = 2048
# Opt-out attribute for a single link (``<a href=... data-notrack>``), also Mailjet's mj-notrack.
_NOTRACK = ("data-notrack", "mj-notrack")

_ATTR = r"""[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?"""
_TAG = re.compile(rf"<(a|area)((?:\s+{_ATTR})*)\s*/?>", re.IGNORECASE)
_ATTR_ITEM = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
# Personalisation placeholders: Mailjet's {{var:x}} / [[UNSUB_LINK]] and friends cannot be tracked before
# rendering, since the URL differs per recipient.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\[\[|\]\]|\{%|%\}")


@dataclass(frozen=True, slots=True)
class TrackedLink:
    """A link the rewriter replaced: its 1-based position in the document and its original URL."""

    position: int
    url: str


def _trackable(url: str, skip_prefix: str | None) -> bool:
    lower = url.lower()
    return (
        lower.startswith(("http://", "https://"))
        and (skip_prefix is None or not url.startswith(skip_prefix))
        and len(url) <= MAX_TRACKED_URL
        and _PLACEHOLDER.search(url) is None
        and not any(c in url for c in '\r\n\t\x00 "<>')
    )


def _rewrite_tag(
    tag: re.Match[str], position: int, make_url: Callable[[int, str], str], skip_prefix: str | None
) -> str | None:
    attributes = tag.group(2)
    items = list(_ATTR_ITEM.finditer(attributes))
    names = {m.group(1).lower() for m in items}
    if names.intersection(_NOTRACK):
        return None
    href = next((m for m in items if m.group(1).lower() == "href"), None)
    if href is None or href.group(2) is None:
        return None
    raw = href.group(2)
    if raw[0] in "\"'":
        raw = raw[1:-1]
    url = html.unescape(raw).strip()
    if not _trackable(url, skip_prefix):
        return None
    replacement = f'href="{html.escape(make_url(position, url), quote=True)}"'
    start = tag.start(2) + href.start()
    end = tag.start(2) + href.end()
    whole = tag.group(0)
    return whole[: start - tag.start()] + replacement + whole[end - tag.start() :]


def rewrite_links(
    document: str, make_url: Callable[[int, str], str], *, skip_prefix: str | None = None
) -> tuple[str, list[TrackedLink]]:
    """Replace each trackable link by ``make_url(position, url)``; returns the new HTML and the links.

    URLs starting with ``skip_prefix`` (the unsubscribe page) are left as they are.
    Positions count the trackable links in document order, from 1, as Mailjet's ``PositionIndex`` does.
    Links inside HTML comments (Outlook conditional blocks) are left alone.
    """
    comments = [(m.start(), m.end()) for m in _COMMENT.finditer(document)]
    out: list[str] = []
    links: list[TrackedLink] = []
    last = 0
    for tag in _TAG.finditer(document):
        if any(start <= tag.start() < end for start, end in comments):
            continue
        position = len(links) + 1
        captured: list[str] = []

        def make(pos: int, url: str, captured: list[str] = captured) -> str:
            captured.append(url)
            return make_url(pos, url)

        replaced = _rewrite_tag(tag, position, make, skip_prefix)
        if replaced is None:
            continue
        links.append(TrackedLink(position, captured[0]))
        out.append(document[last : tag.start()])
        out.append(replaced)
        last = tag.end()
    out.append(document[last:])
    return "".join(out), links


def insert_pixel(document: str, pixel_url: str) -> str:
    """Add a 1x1 image before the last ``</body>`` (or at the end when there is none)."""
    img = (
        f'<img src="{html.escape(pixel_url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" />'
    )
    ends = list(_BODY_END.finditer(document))
    if not ends:
        return document + img
    at = ends[-1].start()
    return document[:at] + img + document[at:]
