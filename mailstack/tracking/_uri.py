"""Links as a browser follows them: the ASCII URI a browser requests for the URL written in an href.

An href may hold an IRI (``https://例え.jp/``, ``/wiki/Москва``, ``?q=ü``) or stray control characters;
an HTTP ``Location`` header can carry neither. The URL is parsed by the WHATWG URL standard, as the
recipient's browser would have parsed the href (ada, the parser Node.js uses, through ``ada-url``):
IDNA for the host, percent-encoding (UTF-8) for path, query and fragment, tab and newlines removed,
other controls percent-encoded, and a URL no browser would follow (a control character in the host, a
bad port, an invalid IPv4 address) refused.
"""

from __future__ import annotations

import re
from typing import Final

from ada_url import URL

__all__ = ["web_uri"]

_PRINTABLE_ASCII: Final = re.compile(r"[!-~]*")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_WEB_SCHEMES: Final = frozenset({"http:", "https:"})


def web_uri(url: str) -> str | None:
    """``url`` as the ASCII http(s) URI a browser would request, or None when a browser would not.

    A URL already written in printable ASCII is returned as written (a browser parses it the same way
    in a ``Location`` header as in the href); any other is replaced by its WHATWG serialisation.
    """
    if not url.lower().startswith(("http://", "https://")):
        return None
    # A lone surrogate cannot be encoded; a browser's URL parser sees U+FFFD there.
    text = _SURROGATE.sub("\ufffd", url)
    try:
        parsed = URL(text)
    except ValueError:
        return None
    if parsed.protocol not in _WEB_SCHEMES:
        return None
    if _PRINTABLE_ASCII.fullmatch(text):
        return text
    return parsed.href
