"""Header encoding: RFC 5322 folding, RFC 2047 encoded words, addresses with IDNA (A-labels) and RFC 6532.

Everything here produces ASCII except local parts of internationalised addresses (RFC 6532), which are
emitted as raw UTF-8; the composer detects that and asks for SMTPUTF8. Functions return *tokens*: strings
that may not be split, joined by single spaces that :func:`fold` may turn into CRLF SP.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import idna

from mailstack.compose._errors import ComposeError
from mailstack.model import Address

__all__ = [
    "addr_spec",
    "address_list_tokens",
    "check_field",
    "domain_to_ascii",
    "encoded_words",
    "first_token_room",
    "fold",
    "mailbox_tokens",
    "phrase_tokens",
    "quote_string",
    "unstructured_tokens",
]

SOFT_LIMIT = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters...
HARD_LIMIT = 998  # ...and MUST be at most 998 octets (excluding CRLF)

_CR_LF_NUL = re.compile(r"[\r\n\x00]")

# Words and encoded words are kept <= 66 characters so that even the first one fits on the line after
# "Subject: " or "Reply-To: " within 78 characters; longer raw words are encoded (and thereby split).
_TOKEN_MAX = 66
_PRINTABLE_WORD = re.compile(r"[!-~]+")  # printable US-ASCII, no space
_ATEXT = r"\-A-Za-z0-9!#$%&'*+/=?^_`{|}~"  # "-" escaped: the UTF-8 variant appends a range
_ATOM = re.compile(f"[{_ATEXT}]+")
_DOT_ATOM = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*")
# RFC 6532 3.2: atext additionally allows any non-ASCII UTF-8 character.
_DOT_ATOM_UTF8 = re.compile(f"[{_ATEXT}\u0080-\U0010ffff]+(?:\\.[{_ATEXT}\u0080-\U0010ffff]+)*")
_ASCII_DOMAIN = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_DOMAIN_LITERAL = re.compile(r"\[[A-Za-z0-9.:]+\]")

# RFC 2047 5(3): the characters allowed unencoded in a "Q" word that sits in a phrase; using the most
# restrictive set everywhere makes the same encoded words valid in Subject and display names alike.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTE: tuple[str, ...] = tuple(
    chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256)
)
_Q_LEN: tuple[int, ...] = tuple(len(s) for s in _Q_BYTE)
_EW_Q_PREFIX = "=?utf-8?q?"
_EW_B_PREFIX = "=?utf-8?b?"
# RFC 2047 2 allows up to 75 characters per encoded word; see _TOKEN_MAX for why we stay shorter.
_EW_MAX_TEXT = _TOKEN_MAX - len(_EW_Q_PREFIX) - len("?=")  # 54 characters of encoded text
_EW_MAX_B_BYTES = _EW_MAX_TEXT // 4 * 3  # 39 bytes -> 52 base64 characters


def check_field(value: str, field: str) -> None:
    """Raise :class:`ComposeError` if ``value`` contains CR, LF or NUL (header injection)."""
    if _CR_LF_NUL.search(value) is not None:
        raise ComposeError(f"{field} contains CR, LF or NUL")


def fold(name: str, tokens: Iterable[str], field: str) -> str:
    """Render ``Name: tok tok ...\\r\\n``, folding between tokens to keep lines <= 78 where possible.

    Raises :class:`ComposeError` if a token cannot fit in a 998-octet line.
    """
    out = [name, ":"]
    line = len(name) + 1
    name_only = True  # the current line holds only "Name:"
    for tok in tokens:
        size = len(tok) if tok.isascii() else len(tok.encode("utf-8"))
        # Never fold before an empty token (it would leave a whitespace-only line, RFC 5322 3.2.2), nor
        # right after the colon unless forced: parsers (CPython's among them) then keep the leading space.
        if size and (line + 1 + size > HARD_LIMIT or (not name_only and line + 1 + size > SOFT_LIMIT)):
            out.append("\r\n ")
            line = 1 + size
        else:
            out.append(" ")
            line += 1 + size
        name_only = False
        out.append(tok)
        if line > HARD_LIMIT:
            raise ComposeError(f"{field} cannot be folded into lines of at most {HARD_LIMIT} octets")
    out.append("\r\n")
    return "".join(out)


def _q_words(text: str, first: int) -> list[str]:
    words: list[str] = []
    cur: list[str] = []
    size, limit = 0, first
    for ch in text:
        code = ord(ch)
        # Encode per character, so a chunk boundary never splits a multi-byte sequence.
        enc = _Q_BYTE[code] if code < 0x80 else "".join([_Q_BYTE[b] for b in ch.encode("utf-8")])
        if size + len(enc) > limit and cur:
            words.append(f"{_EW_Q_PREFIX}{''.join(cur)}?=")
            cur, size, limit = [], 0, _EW_MAX_TEXT
        cur.append(enc)
        size += len(enc)
    words.append(f"{_EW_Q_PREFIX}{''.join(cur)}?=")
    return words


def _b_words(text: str, first: int) -> list[str]:
    words: list[str] = []
    cur = bytearray()
    limit = max(first // 4 * 3, 4)  # base64 of 3n bytes is 4n characters; a character needs <= 4 bytes
    for ch in text:
        data = ch.encode("utf-8")
        if len(cur) + len(data) > limit and cur:
            words.append(f"{_EW_B_PREFIX}{base64.b64encode(cur).decode('ascii')}?=")
            cur.clear()
            limit = _EW_MAX_B_BYTES
        cur += data
    words.append(f"{_EW_B_PREFIX}{base64.b64encode(cur).decode('ascii')}?=")
    return words


def encoded_words(text: str, first: int = _TOKEN_MAX) -> list[str]:
    """Encode ``text`` as RFC 2047 UTF-8 encoded words (Q or B, whichever is shorter), each <= 66 chars.

    The first word is limited to ``first`` characters (to fit after a long header name). Decoders ignore
    the whitespace between adjacent encoded words (RFC 2047 6.2), so the list decodes to exactly ``text``.
    """
    if not text:
        return []
    data = text.encode("utf-8")
    first_text = min(first, _TOKEN_MAX) - len(_EW_Q_PREFIX) - len("?=")
    if sum(map(_Q_LEN.__getitem__, data)) <= (len(data) + 2) // 3 * 4:
        return _q_words(text, first_text)
    return _b_words(text, first_text)


def _is_raw_word(word: str) -> bool:
    # "=?" could be mistaken for the start of an encoded word by decoders, so such words get encoded.
    return 0 < len(word) <= _TOKEN_MAX and _PRINTABLE_WORD.fullmatch(word) is not None and "=?" not in word


def _spread_empty(words: Sequence[str], raw: list[bool]) -> None:
    # An empty word stands for an extra space (or a leading/trailing one). Decoders collapse or strip
    # such whitespace between raw words, so the neighbours are encoded together with it.
    last = len(words) - 1
    for i, word in enumerate(words):
        if not word:
            raw[i] = False
            if i > 0:
                raw[i - 1] = False
            if i < last:
                raw[i + 1] = False


def _runs(
    words: Sequence[str], raw: Sequence[bool], render_raw: dict[int, str], first: int = _TOKEN_MAX
) -> tuple[str, ...]:
    # Maximal runs of non-raw words are encoded as one unit, spaces included; between a raw word and an
    # encoded word the separating space survives decoding, between two encoded words it does not.
    tokens: list[str] = []
    i, n = 0, len(words)
    while i < n:
        if raw[i]:
            tokens.append(render_raw.get(i, words[i]))
            i += 1
            continue
        j = i
        while j < n and not raw[j]:
            j += 1
        tokens.extend(encoded_words(" ".join(words[i:j]), first if i == 0 else _TOKEN_MAX))
        i = j
    return tuple(tokens)


def first_token_room(name: str) -> int:
    """How long the first token after ``Name: `` may be for the line to stay within 78 characters."""
    # Below ~24 characters an encoded word cannot hold a 4-byte character any more; such long header
    # names simply get a longer first line.
    return max(24, min(_TOKEN_MAX, SOFT_LIMIT - len(name) - 2))


@lru_cache(maxsize=4096)
def unstructured_tokens(text: str, first: int = _TOKEN_MAX) -> tuple[str, ...]:
    """Tokens for an unstructured header body (Subject, free text): raw ASCII words, encoded words else.

    ``first`` bounds the length of the first token (see :func:`first_token_room`).
    """
    words = text.split(" ")
    raw = [_is_raw_word(w) for w in words]
    if raw[0] and len(words[0]) > first:
        raw[0] = False  # encoding it lets the encoder split it to fit the first line
    _spread_empty(words, raw)
    return _runs(words, raw, {}, first)


def quote_string(text: str) -> str:
    """RFC 5322 quoted-string (``text`` must be printable ASCII or RFC 6532 UTF-8)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@lru_cache(maxsize=4096)
def phrase_tokens(name: str) -> tuple[str, ...]:
    """Tokens for a display name: atoms, quoted strings, or encoded words for anything non-ASCII."""
    words = name.split(" ")
    raw = [_is_raw_word(w) and len(w) <= _TOKEN_MAX - 2 for w in words]
    _spread_empty(words, raw)
    atoms = [r and _ATOM.fullmatch(w) is not None for w, r in zip(words, raw, strict=True)]
    if all(atoms):
        return tuple(words)
    if all(raw) and len(quoted := quote_string(name)) <= _TOKEN_MAX:
        # The conventional form: "Doe, John" rather than "Doe," John.
        return (quoted,)
    quoted_words = {i: quote_string(w) for i, w in enumerate(words) if raw[i] and not atoms[i]}
    return _runs(words, raw, quoted_words)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@lru_cache(maxsize=8192)
def domain_to_ascii(domain: str) -> str:
    """Return ``domain`` with IDN labels converted to A-labels (punycode); ValueError if invalid."""
    if domain.isascii():
        if _ASCII_DOMAIN.fullmatch(domain) or _DOMAIN_LITERAL.fullmatch(domain):
            return domain
        raise ValueError(f"invalid domain {domain!r}")
    try:
        # UTS 46 mapping first (case folding, width mapping), then IDNA 2008 as browsers and MTAs do.
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError and its subclasses derive from it
        raise ValueError(f"invalid internationalized domain {domain!r}: {exc}") from exc


@lru_cache(maxsize=8192)
def _addr_spec(email: str) -> str:
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{email!r} is not an addr-spec")
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = _unquote(local[1:-1])  # already quoted by the caller: normalise, then re-quote if needed
    if not local.isprintable():
        raise ValueError("local part contains control characters")
    if local.isascii():
        if _DOT_ATOM.fullmatch(local) is None:
            local = quote_string(local)
    elif _DOT_ATOM_UTF8.fullmatch(local) is None:
        local = quote_string(local)
    return f"{local}@{domain_to_ascii(domain)}"


def addr_spec(email: str, field: str) -> str:
    """Format ``email`` as an addr-spec with an A-label domain; non-ASCII local parts stay UTF-8."""
    check_field(email, field)
    try:
        return _addr_spec(email)
    except ValueError as exc:
        raise ComposeError(f"{field}: {exc}") from None


def mailbox_tokens(address: Address, field: str) -> list[str]:
    """Tokens for one mailbox: ``addr-spec`` alone, or display name tokens then ``<addr-spec>``."""
    spec = addr_spec(address.email, f"{field}.Email")
    if not address.name:
        return [spec]
    check_field(address.name, f"{field}.Name")
    return [*phrase_tokens(address.name), f"<{spec}>"]


def address_list_tokens(addresses: Sequence[Address], field: str) -> list[str]:
    """Tokens for a comma-separated address list (To, Cc, Reply-To)."""
    tokens: list[str] = []
    for i, address in enumerate(addresses):
        if tokens:
            tokens[-1] += ","
        tokens.extend(mailbox_tokens(address, f"{field}[{i}]"))
    return tokens
