"""The one policy for header fields a sender adds to a message (the Send API's ``Headers``).

The composer renders user headers with :func:`render_user_headers` and the Send API checks them with
:func:`header_problems` when it accepts a message: the same code, so a header set the API accepts always
composes at delivery. Submitted (SMTP) messages keep their own header block; :data:`AT_MOST_ONCE` is the
rule both paths apply to repeated fields.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from mailstack.compose._errors import ComposeError
from mailstack.compose._headers import address_list_tokens, first_token_room, fold, unstructured_tokens
from mailstack.model import Address

__all__ = [
    "AT_MOST_ONCE",
    "MAX_NAME_CHARS",
    "HeaderProblem",
    "header_problems",
    "render_user_headers",
]

_FIELD_NAME: Final = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII except ":"
# Names well within one 998-octet line, whatever the value's first word.
MAX_NAME_CHARS: Final = 200
# Header fields mailstack owns: overriding them would spoof identity, break MIME structure or DKIM,
# or forge trace/authentication information added by receivers.
_RESERVED: Final = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "date",
        "message-id",
        "mime-version",
        "dkim-signature",
        "return-path",
        "received",
        "authentication-results",
    }
)
# MIME structure (Content-Type, -Disposition, -Language...: the body's parts carry their own) and ARC
# sets, which only forwarders add (RFC 8617).
_RESERVED_PREFIXES: Final = ("content-", "arc-")
# Bulk mail gets mailstack's own unsubscribe headers; transactional senders may bring theirs.
_BULK_RESERVED_PREFIX: Final = "list-unsubscribe"
# RFC 5322 3.6: at most once each. Repeats (in any letter case) are a classic way to show one value to
# the reader and another to a filter or to DKIM.
AT_MOST_ONCE: Final = frozenset(
    {
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
    }
)
# Anything that could end a header line in one MIME or SMTP implementation or another, and lone
# surrogates, which cannot be encoded.
_UNSAFE_VALUE: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
# Printable ASCII and TAB: such values are emitted verbatim (the user may have pre-encoded them).
_VERBATIM: Final = re.compile(r"[\t\x20-\x7e]*")
_VERBATIM_TOKEN_MAX: Final = 900

ProblemKind = Literal["name", "value", "reserved", "repeated", "conflict"]


@dataclass(frozen=True, slots=True)
class HeaderProblem:
    """Why one header field cannot be sent: ``message`` names the field as the caller labelled it."""

    index: int
    name: str
    kind: ProblemKind
    message: str


def _default_label(index: int, _name: str) -> str:
    return f"Headers[{index}]"


def _value_tokens(name: str, value: str, field: str) -> list[str] | tuple[str, ...]:
    lower, first = name.lower(), first_token_room(name)
    if _VERBATIM.fullmatch(value) is not None:
        tokens = value.split(" ")
        if max(map(len, tokens)) <= _VERBATIM_TOKEN_MAX:
            return tokens
        return unstructured_tokens(value, first)  # unfoldable otherwise; encoded words can be split
    if lower == "reply-to":
        # A structured header: encoded words are only valid inside its display names.
        pairs = email.utils.getaddresses([value])
        if not pairs or any("@" not in addr for _, addr in pairs):
            raise ComposeError(f"{field} is not a valid address list")
        return address_list_tokens([Address(addr, display) for display, addr in pairs], field)
    return unstructured_tokens(value, first)


def _check(
    headers: Sequence[tuple[str, str]],
    *,
    bulk: bool,
    subject: bool,
    reply_to: bool,
    label: Callable[[int, str], str],
    first_only: bool,
) -> tuple[list[str], list[HeaderProblem]]:
    lines: list[str] = []
    problems: list[HeaderProblem] = []
    seen: set[str] = set()

    def problem(index: int, name: str, kind: ProblemKind, message: str) -> None:
        problems.append(HeaderProblem(index, name, kind, message))

    for i, (name, value) in enumerate(headers):
        if first_only and problems:
            break
        field = label(i, name)
        if _FIELD_NAME.fullmatch(name) is None or len(name) > MAX_NAME_CHARS:
            if not name.isprintable():
                why = f"{field}.Name contains CR, LF, NUL or another control character"
            else:
                shown = name if len(name) <= 100 else name[:100] + "…"
                why = (
                    f"{field}.Name {shown!r} is not a valid header field name (1-{MAX_NAME_CHARS} printable"
                    ' ASCII characters other than ":")'
                )
            problem(i, name, "name", why)
            continue
        lower = name.lower()
        if (
            lower in _RESERVED
            or lower.startswith(_RESERVED_PREFIXES)
            or (bulk and lower.startswith(_BULK_RESERVED_PREFIX))
        ):
            problem(
                i, name, "reserved", f"{field}.Name {name!r} is set by mailstack and cannot be overridden"
            )
            continue
        if lower in AT_MOST_ONCE:
            if lower in seen:
                problem(
                    i, name, "repeated", f"{field}.Name {name!r} may appear only once (in any letter case)"
                )
                continue
            seen.add(lower)
            if (lower == "subject" and subject) or (lower == "reply-to" and reply_to):
                problem(i, name, "conflict", f"{field}.Name {name!r} conflicts with the message's own {name}")
                continue
        if _UNSAFE_VALUE.search(value):
            problem(i, name, "value", f"{field}.Value contains CR, LF, NUL or another control character")
            continue
        try:
            lines.append(fold(name, _value_tokens(name, value, f"{field}.Value"), f"{field}.Value"))
        except ComposeError as exc:
            problem(i, name, "value", str(exc))
    return lines, problems


def header_problems(
    headers: Sequence[tuple[str, str]],
    *,
    bulk: bool = False,
    subject: bool = False,
    reply_to: bool = False,
    label: Callable[[int, str], str] = _default_label,
) -> list[HeaderProblem]:
    """Every reason the user headers ``headers`` (in order) cannot be sent; empty when they compose.

    ``bulk``: campaign mail (its List-Unsubscribe fields are mailstack's); ``subject`` / ``reply_to``:
    the message sets its own Subject / Reply-To. ``label(index, name)`` names a field in the messages.
    """
    return _check(headers, bulk=bulk, subject=subject, reply_to=reply_to, label=label, first_only=False)[1]


def render_user_headers(
    headers: Sequence[tuple[str, str]], *, bulk: bool, subject: bool, reply_to: bool
) -> tuple[list[str], frozenset[str]]:
    """The folded header lines of ``headers`` and their lower-case names; :class:`ComposeError` with
    the first of :func:`header_problems` otherwise."""
    lines, problems = _check(
        headers, bulk=bulk, subject=subject, reply_to=reply_to, label=_default_label, first_only=True
    )
    if problems:
        raise ComposeError(problems[0].message)
    return lines, frozenset(name.lower() for name, _ in headers)
