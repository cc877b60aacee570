"""RFC 6376 "relaxed" canonicalization, done with bytes operations and compiled regexes.

Everything works on CRLF-normalized bytes: :func:`split_message` converts bare LF line endings so that a
message handed over with LF still hashes the way it will look on the wire (SMTP transports CRLF).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CRLF = b"\r\n"

# A header field ends at a CRLF not followed by WSP (a following WSP means a folded continuation line).
_FIELD_BREAK = re.compile(rb"\r\n(?![ \t])")


def normalize_newlines(data: bytes) -> bytes:
    """Return ``data`` with every bare LF turned into CRLF (fast path: already CRLF-only)."""
    lf = data.count(b"\n")
    if lf == 0 or lf == data.count(CRLF):
        return data
    return data.replace(CRLF, b"\n").replace(b"\n", CRLF)


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """Split a message into its header block (each field CRLF-terminated) and its body.

    A message without an empty line is all header; the body is then empty.
    """
    message = normalize_newlines(message)
    if message.startswith(CRLF):
        return b"", message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:
        if message and not message.endswith(CRLF):
            message += CRLF
        return message, b""
    return message[: end + 2], message[end + 4 :]


def parse_headers(block: bytes) -> list[tuple[bytes, bytes]]:
    """Parse a header block into ``(lower-case name, raw value)`` pairs, in message order.

    The raw value keeps its folding; lines without a colon are not header fields and are dropped.
    """
    if not block:
        return []
    if block.endswith(CRLF):
        block = block[:-2]
    fields: list[tuple[bytes, bytes]] = []
    for field in _FIELD_BREAK.split(block):
        name, sep, value = field.partition(b":")
        if sep:
            # WSP before the colon is not part of the name (relaxed canonicalization deletes it too).
            fields.append((name.rstrip(b" \t").lower(), value))
    return fields


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """Relaxed-canonicalize one header field (RFC 6376 §3.4.2); ``name`` must be lower-case."""
    return relaxed_headers(((name, value),))


def relaxed_headers(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Relaxed-canonicalize ``(lower-case name, raw value)`` fields as one block, in the given order.

    Same result as :func:`relaxed_header` on each field, but the unfold and WSP collapse run as a
    few C-speed replaces over the whole block instead of a regex per field.
    """
    # Stripping each value first (CRLF included, for a value that starts on a continuation line)
    # leaves only interior WSP, so block-wide replaces cannot touch the "name:" boundaries; and every
    # CRLF still inside a value is a fold, since parse_headers splits fields at CRLF not followed by WSP.
    data = b"".join([name + b":" + value.strip(b" \t\r\n") + CRLF for name, value in fields])
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    if b"\r\n " in data:
        data = data.replace(b"\r\n ", b" ")
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data


def relaxed_body(body: bytes) -> bytes:
    """Relaxed-canonicalize a CRLF-normalized body (RFC 6376 §3.4.4).

    A last line without CRLF gets one first, as SMTP transport would add it, so its trailing WSP is
    removed like on every other line. A body of only empty lines canonicalizes to the empty string.
    """
    if not body:
        return body
    if not body.endswith(CRLF):
        body += CRLF
    # Collapse WSP runs to one space with C-speed replaces rather than a regex substitution, which is
    # ~20x slower on typical bodies: each pass halves every run of spaces, so a run of n spaces takes
    # log2(n) passes, and most bodies need none or a few.
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    while b"  " in body:
        body = body.replace(b"  ", b" ")
    # After the collapse every trailing WSP run is exactly one space before the CRLF.
    body = body.replace(b" \r\n", CRLF)
    # Find the start of the trailing run of empty lines by index instead of re-slicing the body repeatedly.
    end = len(body)
    while end >= 4 and body[end - 4 : end] == b"\r\n\r\n":
        end -= 2
    if end == 2:  # only empty lines were left
        return b""
    return body[:end] if end != len(body) else body
