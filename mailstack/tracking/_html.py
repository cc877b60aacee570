"""A one-pass HTML start-tag scanner: finds tags as a browser's tokenizer does, in linear time.

It follows the WHATWG tokenizer's states where they decide what is a tag and where it ends: comments
(``<!-- … -->``, ``--!>``, the abrupt ``<!-->``), bogus comments and doctypes (``<!…>``, ``<?…>``), end
tags, quoted and unquoted attribute values, a ``/`` between attributes, and the raw text of ``<script>``,
``<style>``, ``<title>``, ``<textarea>`` & co, where nothing is a tag. Markup never closed (a quote, a
tag, a comment running to the end) hides the rest of the document, as it does in a browser.

Every search moves forward only: each character is looked at a bounded number of times whatever the
input (no regular expression that can backtrack over the document, no search repeated from the same
place), so a hostile document costs time proportional to its length.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.entities import html5
from typing import Final

__all__ = ["Attribute", "StartTag", "start_tags", "unescape_attribute"]

_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_LETTERS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Single character classes, anchored with .match(): each runs over its span once and never backtracks.
_SPACE: Final = re.compile(r"[\t\n\f\r ]*")
_SPACE_OR_SLASH: Final = re.compile(r"[\t\n\f\r /]*")
_TAG_NAME: Final = re.compile(r"[^\t\n\f\r />]*")
_ATTRIBUTE_NAME: Final = re.compile(r"[^\t\n\f\r />=]*")
_UNQUOTED_VALUE: Final = re.compile(r"[^\t\n\f\r >]*")
# Elements whose content is text up to their own end tag (RAWTEXT and RCDATA; scripting is off in mail).
_RAW_TEXT: Final = frozenset({"iframe", "noembed", "noframes", "script", "style", "textarea", "title", "xmp"})
_RAW_TEXT_END: Final = {name: re.compile(rf"</{name}(?=[\t\n\f\r />])", re.IGNORECASE) for name in _RAW_TEXT}


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute as written: ``name`` in ASCII lower case, ``value`` without quotes and with its
    character references still encoded (None when it has no ``=``); ``start``/``end`` span it whole."""

    name: str
    value: str | None
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class StartTag:
    """A start tag: its lower-case name, its span ``[start, end)`` and its attributes in order."""

    name: str
    start: int
    end: int
    attributes: tuple[Attribute, ...]

    def attribute(self, name: str) -> Attribute | None:
        """The first attribute of that (lower-case) name: a browser ignores later duplicates."""
        return next((a for a in self.attributes if a.name == name), None)


def _skip(span: re.Pattern[str], document: str, pos: int) -> int:
    """The end of ``span`` (a ``[…]*`` class, which always matches) from ``pos``."""
    match = span.match(document, pos)
    assert match is not None
    return match.end()


class _Forward:
    """``document.find(needle, pos)`` for positions that never go back: each character is scanned once."""

    __slots__ = ("_at", "_document", "_needle")

    def __init__(self, document: str, needle: str) -> None:
        self._document = document
        self._needle = needle
        self._at = -2  # not searched yet

    def find(self, pos: int) -> int:
        if self._at == -1 or self._at >= pos:
            return self._at  # absent after an earlier position is absent after this one too
        self._at = self._document.find(self._needle, pos)
        return self._at


def start_tags(document: str, names: frozenset[str]) -> Iterator[StartTag]:
    """The start tags named in ``names`` (lower case), in document order, with their attributes.

    Tags of other names are scanned (their quoted values may hide a ``>``) but not collected.
    """
    length = len(document)
    comment_end = _Forward(document, "-->")
    comment_bang_end = _Forward(document, "--!>")
    pos = 0
    while True:
        lt = document.find("<", pos)
        if lt < 0 or lt + 1 >= length:
            return
        following = document[lt + 1]
        if following in _ASCII_LETTERS:
            name_end = _skip(_TAG_NAME, document, lt + 1)
            name = document[lt + 1 : name_end].translate(_ASCII_LOWER)
            wanted = name in names
            scanned = _attributes(document, name_end, collect=wanted)
            if scanned is None:
                return  # a tag running to the end of the document: nothing after it is markup
            end, attributes = scanned
            if wanted:
                yield StartTag(name, lt, end, attributes)
            pos = end
            if name == "plaintext":
                return  # everything after <plaintext> is text
            if name in _RAW_TEXT:
                closing = _RAW_TEXT_END[name].search(document, end)
                if closing is None:
                    return
                pos = closing.start()  # its end tag is scanned on the next turn
        elif following == "/":
            if lt + 2 >= length:
                return
            if document[lt + 2] in _ASCII_LETTERS:
                # An end tag: attributes are not allowed, but a browser still reads them to find its end.
                scanned = _attributes(document, _skip(_TAG_NAME, document, lt + 2), collect=False)
                if scanned is None:
                    return
                pos = scanned[0]
            elif document[lt + 2] == ">":
                pos = lt + 3  # "</>" is dropped
            else:
                pos = _bogus_comment(document, lt + 2)
        elif following == "!":
            if document.startswith("<!--", lt):
                pos = _comment(document, lt + 4, comment_end, comment_bang_end)
            else:
                pos = _bogus_comment(document, lt + 2)  # doctype, CDATA (a comment in HTML content)
        elif following == "?":
            pos = _bogus_comment(document, lt + 1)
        else:
            pos = lt + 1  # a lone "<" is text
        if pos < 0:
            return


def _bogus_comment(document: str, start: int) -> int:
    end = document.find(">", start)
    return -1 if end < 0 else end + 1


def _comment(document: str, start: int, dashes: _Forward, bang: _Forward) -> int:
    """The end of a comment whose ``<!--`` ends at ``start``; -1 when it runs to the end."""
    if document.startswith(">", start):
        return start + 1  # <!-->
    if document.startswith("->", start):
        return start + 2  # <!--->
    ends = [at for at in (dashes.find(start), bang.find(start)) if at >= 0]
    if not ends:
        return -1
    first = min(ends)
    return first + (3 if document.startswith("-->", first) else 4)


def _attributes(document: str, pos: int, *, collect: bool) -> tuple[int, tuple[Attribute, ...]] | None:
    """Read attributes from ``pos`` (just after the tag name) to the tag's ``>``.

    Returns the offset after ``>`` and the attributes (only when ``collect``), or None when the
    document ends inside the tag.
    """
    length = len(document)
    found: list[Attribute] = []
    while True:
        # Before an attribute name; a "/" not followed by ">" is skipped like a space, as browsers do.
        pos = _skip(_SPACE_OR_SLASH, document, pos)
        if pos >= length:
            return None
        if document[pos] == ">":
            return pos + 1, tuple(found)
        name_start = pos
        # The first character belongs to the name even when it is "=" (a parse error browsers accept).
        pos = _skip(_ATTRIBUTE_NAME, document, pos + 1)
        name_end = pos
        pos = _skip(_SPACE, document, pos)
        if pos >= length:
            return None
        if document[pos] != "=":
            if collect:
                name = document[name_start:name_end].translate(_ASCII_LOWER)
                found.append(Attribute(name, None, name_start, name_end))
            continue  # "/", ">" or the next attribute's name
        pos = _skip(_SPACE, document, pos + 1)
        if pos >= length:
            return None
        quote = document[pos]
        if quote in "\"'":
            close = document.find(quote, pos + 1)
            if close < 0:
                return None
            value = document[pos + 1 : close]
            pos = close + 1
        elif quote == ">":
            value = ""  # "href=>": an empty value, and the tag ends here
        else:
            value_end = _skip(_UNQUOTED_VALUE, document, pos)
            value = document[pos:value_end]
            pos = value_end
        if collect:
            name = document[name_start:name_end].translate(_ASCII_LOWER)
            found.append(Attribute(name, value, name_start, pos))


# Character references as the tokenizer reads them; digits are capped before any int() conversion.
_REFERENCE: Final = re.compile(r"&(?:#([0-9]+);?|#[xX]([0-9a-fA-F]+);?|([A-Za-z][A-Za-z0-9]*;?))")
_MAX_CODE_POINT_DIGITS: Final = 8  # more digits than any code point: U+FFFD, as the standard says


def unescape_attribute(value: str) -> str:
    """An attribute value with its character references decoded as a browser decodes them.

    Unlike :func:`html.unescape`, a named reference without ``;`` is only decoded when it is a whole
    legacy name not followed by ``=`` (``?a=1&copy=2`` stays as written, as in a browser's href), and a
    numeric reference of thousands of digits is U+FFFD instead of an exception.
    """
    if "&" not in value:
        return value

    def decode(match: re.Match[str]) -> str:
        decimal, hexadecimal, name = match.groups()
        if decimal is not None or hexadecimal is not None:
            digits = (decimal if decimal is not None else hexadecimal).lstrip("0") or "0"
            if len(digits) > _MAX_CODE_POINT_DIGITS:
                return "\ufffd"
            prefix = "&#" if decimal is not None else "&#x"
            return html.unescape(f"{prefix}{digits};")
        if name.endswith(";") and name in html5:
            return html5[name]
        bare = name.removesuffix(";")
        after = match.string[match.end() : match.end() + 1]
        if bare in html5 and (name.endswith(";") or after != "="):
            return html5[bare] + name[len(bare) :]
        return match.group(0)

    return _REFERENCE.sub(decode, value)
