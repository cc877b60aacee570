"""HTML rewriting: tracked links and the open pixel.

The rewriter is deliberately conservative: it touches only the ``href`` of ``<a>`` and ``<area>`` tags
whose value is an absolute http(s) URL, leaves everything else byte for byte, and never tracks links it
cannot rebuild exactly (template placeholders, opted-out links, absurdly long URLs). Tags are found by a
one-pass scanner (:mod:`._html`), so the cost is linear in the document whatever it holds.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ._html import StartTag, start_tags, unescape_attribute
from ._uri import web_uri

__all__ = ["MAX_TRACKED_LINKS", "MAX_TRACKED_URL", "TrackedLink", "insert_pixel", "rewrite_links"]

# Longer URLs stay untracked: their token would not fit the signer's limit and some clients cut long URLs.
MAX_TRACKED_URL: Final = 2048
# Links after this many tracked ones are left as written (they work, untracked): it bounds the tokens
# minted and the growth of one copy, whatever a message holds.
MAX_TRACKED_LINKS: Final = 500
# Opt-out attribute for a single link (``<a href=... data-notrack>``), also Mailjet's mj-notrack.
_NOTRACK: Final = frozenset({"data-notrack", "mj-notrack"})
_LINK_TAGS: Final = frozenset({"a", "area"})
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
# Personalisation placeholders: Mailjet's {{var:x}} / [[UNSUB_LINK]] and friends cannot be tracked before
# rendering, since the URL differs per recipient.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\[\[|\]\]|\{%|%\}")


@dataclass(frozen=True, slots=True)
class TrackedLink:
    """A link the rewriter replaced: its 1-based position in the document and the URL it leads to.

    ``url`` is the ASCII form a browser requests (an IRI's host in IDNA, its path and query
    percent-encoded); a URL already written in ASCII is kept as written.
    """

    position: int
    url: str


def _target(tag: StartTag, skip_prefix: str | None) -> tuple[int, int, str] | None:
    """The span of the tag's href and the URL to track, or None when the link stays as it is."""
    if any(attribute.name in _NOTRACK for attribute in tag.attributes):
        return None
    href = tag.attribute("href")
    if href is None or href.value is None:
        return None
    url = unescape_attribute(href.value).strip()
    if (
        len(url) > MAX_TRACKED_URL
        or (skip_prefix is not None and url.startswith(skip_prefix))
        or _PLACEHOLDER.search(url) is not None
    ):
        return None
    uri = web_uri(url)
    if uri is None or len(uri) > MAX_TRACKED_URL:
        return None
    return href.start, href.end, uri


def rewrite_links(
    document: str, make_url: Callable[[int, str], str], *, skip_prefix: str | None = None
) -> tuple[str, list[TrackedLink]]:
    """Replace each trackable link by ``make_url(position, url)``; returns the new HTML and the links.

    URLs starting with ``skip_prefix`` (the unsubscribe page) are left as they are.
    Positions count the trackable links in document order, from 1, as Mailjet's ``PositionIndex`` does;
    after :data:`MAX_TRACKED_LINKS` the remaining links are left as written.
    Links inside HTML comments (Outlook conditional blocks) are left alone.
    """
    out: list[str] = []
    links: list[TrackedLink] = []
    last = 0
    for tag in start_tags(document, _LINK_TAGS):
        if len(links) >= MAX_TRACKED_LINKS:
            break
        found = _target(tag, skip_prefix)
        if found is None:
            continue
        start, end, url = found
        position = len(links) + 1
        links.append(TrackedLink(position, url))
        out.append(document[last:start])
        out.append(f'href="{html.escape(make_url(position, url), quote=True)}"')
        last = end
    out.append(document[last:])
    return "".join(out), links


def insert_pixel(document: str, pixel_url: str) -> str:
    """Add a 1x1 image before the last ``</body>`` (or at the end when there is none)."""
    img = (
        f'<img src="{html.escape(pixel_url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" />'
    )
    at = None
    for at_match in _BODY_END.finditer(document):  # each "</body" is its own start: linear
        at = at_match.start()
    if at is None:
        return document + img
    return document[:at] + img + document[at:]
