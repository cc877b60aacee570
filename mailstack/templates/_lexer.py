"""Tokens of Mailjet's template language.

Text outside tags is one ``TEXT`` token. Inside ``{{ … }}`` and ``{% … %}`` the lexer produces
names, namespaced names (``var:``, ``data:``, ``mj:``, ``segment:`` become one ``NS`` token),
numbers, strings and operators, and the closing delimiter as ``CLOSE``.

Names may contain hyphens followed by a letter (``{% set background-url = … %}`` in Mailjet's own
tutorials, ``var:other-key``), so ``a-b`` is one name and subtraction needs spaces or a digit
(``a - b``, ``var:count-1``). After a namespace or a ``.`` a path key may start with a digit
(``var:items.0``, ``var:2fa``), because Mailjet variable names are JSON object keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mailstack.templates._errors import TemplateError, near

__all__ = ["NAMESPACES", "Token", "tokenize"]

NAMESPACES: Final = frozenset({"var", "data", "mj", "segment"})

TEXT: Final = "TEXT"
PRINT_OPEN: Final = "PRINT_OPEN"
STMT_OPEN: Final = "STMT_OPEN"
CLOSE: Final = "CLOSE"
NAME: Final = "NAME"
NS: Final = "NS"
NUMBER: Final = "NUMBER"
STRING: Final = "STRING"
OP: Final = "OP"
EOF: Final = "EOF"

_TAG_OPEN = re.compile(r"\{[{%]")
_SPACE = re.compile(r"\s+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z_][A-Za-z0-9_]*)*")
_KEY = re.compile(r"[A-Za-z0-9_]+(?:-[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Longest first, so "===" is not read as "==" then "=".
_OPERATORS: Final[tuple[str, ...]] = (
    *("===", "==", "!=", "<>", "<=", ">=", "=", "<", ">"),
    *("+", "-", "*", "/", "(", ")", "[", "]", ",", ".", ":", "!"),
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True, slots=True)
class Token:
    """One token; ``start``/``end`` are offsets in the template, ``tag`` the offset of its tag."""

    kind: str
    value: str
    start: int
    end: int
    tag: int


def tokenize(source: str) -> list[Token]:
    """Split a template into tokens; an unterminated tag or string is a :class:`TemplateError`."""
    tokens: list[Token] = []
    pos = 0
    length = len(source)
    while pos < length:
        match = _TAG_OPEN.search(source, pos)
        if match is None:
            tokens.append(Token(TEXT, source[pos:], pos, length, pos))
            break
        if match.start() > pos:
            tokens.append(Token(TEXT, source[pos : match.start()], pos, match.start(), pos))
        pos = _tag(source, match.start(), tokens)
    tokens.append(Token(EOF, "", length, length, length))
    return tokens


def _tag(source: str, tag: int, tokens: list[Token]) -> int:
    """Tokenize the tag opening at ``tag``; returns the offset just after its closing delimiter."""
    is_print = source[tag + 1] == "{"
    closing = "}}" if is_print else "%}"
    tokens.append(Token(PRINT_OPEN if is_print else STMT_OPEN, source[tag : tag + 2], tag, tag + 2, tag))
    pos = tag + 2
    length = len(source)
    key_next = False  # after a namespace or a '.', a path key may start with a digit
    while True:
        space = _SPACE.match(source, pos)
        if space:
            pos = space.end()
        if pos >= length:
            raise TemplateError(
                f"not valid template ## near ## {near(source, tag, length, limit=20)} ##",
                source=source,
                offset=tag,
            )
        if source.startswith(closing, pos):
            tokens.append(Token(CLOSE, closing, pos, pos + 2, tag))
            return pos + 2
        char = source[pos]
        if key_next and (match := _KEY.match(source, pos)):
            tokens.append(Token(NAME, match.group(), pos, match.end(), tag))
            pos, key_next = match.end(), False
            continue
        key_next = False
        if match := _NAME.match(source, pos):
            word = match.group()
            if word.lower() in NAMESPACES and source.startswith(":", match.end()):
                tokens.append(Token(NS, word.lower(), pos, match.end() + 1, tag))
                pos, key_next = match.end() + 1, True
            else:
                tokens.append(Token(NAME, word, pos, match.end(), tag))
                pos = match.end()
        elif match := _NUMBER.match(source, pos):
            tokens.append(Token(NUMBER, match.group(), pos, match.end(), tag))
            pos = match.end()
        elif char in "\"'":
            pos = _string(source, pos, tag, tokens)
        else:
            for op in _OPERATORS:
                if source.startswith(op, pos):
                    tokens.append(Token(OP, op, pos, pos + len(op), tag))
                    pos += len(op)
                    key_next = op == "."
                    break
            else:
                raise TemplateError(
                    f"expression parsing error ## Unexpected character: {char!r} ## near ## "
                    f"{near(source, tag, pos + 1)} ##",
                    source=source,
                    offset=pos,
                )


def _string(source: str, start: int, tag: int, tokens: list[Token]) -> int:
    quote = source[start]
    parts: list[str] = []
    pos = start + 1
    length = len(source)
    while pos < length:
        char = source[pos]
        if char == quote:
            tokens.append(Token(STRING, "".join(parts), start, pos + 1, tag))
            return pos + 1
        if char == "\\" and pos + 1 < length:
            parts.append(_ESCAPES.get(source[pos + 1], source[pos + 1]))
            pos += 2
            continue
        parts.append(char)
        pos += 1
    raise TemplateError(
        f"expression parsing error ## Unterminated string ## near ## {near(source, tag, start + 1)} ##",
        source=source,
        offset=start,
    )
