"""MIME structure, body encodings and attachments produced by mailstack.compose."""

from __future__ import annotations

import email
import email.policy
import os
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest
from compose_helpers import NOW, assert_wire_format, make_envelope, make_settings

from mailstack.compose import ComposedMessage, _mime, compose
from mailstack.model import Attachment

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3
PDF = b"%PDF-1.7\n" + os.urandom(5000)


def all_header_lines(data: bytes) -> list[bytes]:
    """Header lines of the message and of every MIME part (a header block follows each delimiter)."""
    lines, in_headers = [], True
    for line in data.split(b"\r\n"):
        if in_headers:
            if line == b"":
                in_headers = False
            else:
                lines.append(line)
        elif line.startswith(b"--=_") and not line.endswith(b"--"):
            in_headers = True
    return lines


def build(**spec_kw: Any) -> tuple[ComposedMessage, EmailMessage]:
    composed = compose(make_envelope(**{"text": None, **spec_kw}), make_settings(), now=NOW)
    assert_wire_format(composed.data)
    msg = email.message_from_bytes(composed.data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    for part in msg.walk():
        assert not part.defects, (part.get_content_type(), part.defects)
    return composed, msg


def body_of(part: MIMEPart) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def structure(msg: MIMEPart) -> Any:
    if msg.is_multipart():
        return (msg.get_content_type(), [structure(p) for p in msg.iter_parts()])
    return msg.get_content_type()


def test_text_only_is_single_text_plain_7bit() -> None:
    _, msg = build(text="Hello Alice,\nsee you.\n")
    assert structure(msg) == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] == "7bit"
    assert msg["MIME-Version"] == "1.0"
    assert body_of(msg) == "Hello Alice,\nsee you.\n"


def test_single_part_body_gets_a_final_line_break() -> None:
    composed, msg = build(text="no newline at end")
    assert composed.data.endswith(b"\r\n\r\nno newline at end\r\n")
    assert body_of(msg) == "no newline at end\n"


def test_html_only_is_text_html() -> None:
    _, msg = build(html="<p>Hi</p>")
    assert structure(msg) == "text/html"
    assert body_of(msg).rstrip("\n") == "<p>Hi</p>"


def test_text_and_html_is_alternative_text_first() -> None:
    _, msg = build(text="Hi Alice", html="<p>Hi <b>Alice</b></p>")
    assert structure(msg) == ("multipart/alternative", ["text/plain", "text/html"])
    text, html = msg.iter_parts()
    assert body_of(text) == "Hi Alice"  # exact: the CRLF before a boundary belongs to the boundary
    assert body_of(html) == "<p>Hi <b>Alice</b></p>"


def test_no_body_at_all_gives_empty_text_plain() -> None:
    _, msg = build()
    assert structure(msg) == "text/plain"
    assert body_of(msg) == ""


def test_non_ascii_text_is_quoted_printable_utf8() -> None:
    text = "Grüße aus Köln — 東京 🎉\n"
    composed, msg = build(text=text, html="<p>Grüße</p>")
    text_part, html_part = msg.iter_parts()
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_part.get_content_charset() == "utf-8"
    assert body_of(text_part) == text
    assert body_of(html_part) == "<p>Grüße</p>"
    assert composed.data.isascii()
    assert composed.smtputf8 is False


def test_line_endings_are_normalised() -> None:
    _, msg = build(text="a\r\nb\rc\nd", html="x")
    text_part, _ = msg.iter_parts()
    assert body_of(text_part) == "a\nb\nc\nd"


def test_long_single_line_html_is_wrapped_by_quoted_printable() -> None:
    html = "<p>" + "x" * 5000 + "</p>"
    composed, msg = build(text="t", html=html)
    assert max(len(line) for line in composed.data.split(b"\r\n")) <= 998
    _, html_part = msg.iter_parts()
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert body_of(html_part) == html


def test_ascii_line_longer_than_998_is_not_7bit() -> None:
    text = "y" * 999
    composed, msg = build(text=text, html="h")
    text_part, _ = msg.iter_parts()
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert body_of(text_part) == text
    assert_wire_format(composed.data)


def test_trailing_whitespace_survives_via_quoted_printable() -> None:
    text = "line with trailing space \nand tab\t\nend "
    _, msg = build(text=text, html="h")
    text_part, _ = msg.iter_parts()
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert body_of(text_part) == text


def test_control_characters_in_body_are_encoded() -> None:
    text = "nul\x00 bell\x07 vt\x0b ff\x0c del\x7f end"
    composed, msg = build(text=text, html="h")
    text_part, _ = msg.iter_parts()
    assert body_of(text_part) == text
    assert b"\x00" not in composed.data


def test_no_dot_stuffing() -> None:
    composed, msg = build(text="a\n.\nb\n..\n", html="h")
    assert b"\r\n.\r\nb\r\n..\r\n" in composed.data  # smtplib does the stuffing, not us
    text_part, _ = msg.iter_parts()
    assert body_of(text_part) == "a\n.\nb\n..\n"


def test_attachments_make_multipart_mixed_outermost() -> None:
    att = Attachment("report.pdf", "application/pdf", PDF)
    _, msg = build(text="t", html="<p>h</p>", attachments=(att,))
    assert structure(msg) == (
        "multipart/mixed",
        [("multipart/alternative", ["text/plain", "text/html"]), "application/pdf"],
    )
    part = next(iter(msg.iter_attachments()))
    assert part.get_filename() == "report.pdf"
    assert part.get_content_disposition() == "attachment"
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_content() == PDF


def test_base64_lines_are_76_chars() -> None:
    att = Attachment("blob.bin", "application/octet-stream", os.urandom(10_000))
    composed, _ = build(text="t", attachments=(att,))
    b64_lines = [
        line
        for line in composed.data.split(b"\r\n")
        if len(line) > 60 and b":" not in line and not line.startswith(b"--")
    ]
    assert b64_lines
    assert max(len(line) for line in b64_lines) == 76


def test_all_byte_values_round_trip() -> None:
    data = bytes(range(256)) * 10
    atts = (
        Attachment("bytes.bin", "application/octet-stream", data),
        Attachment("empty.txt", "text/plain", b""),
    )
    _, msg = build(text="t", attachments=atts)
    got = [p.get_content() for p in msg.iter_attachments()]
    assert got[0] == data
    assert got[1] in ("", b"")  # text/* attachments decode to str


def test_inline_attachments_make_related_around_html() -> None:
    logo = Attachment("logo.png", "image/png", PNG, content_id="logo1")
    doc = Attachment("terms.pdf", "application/pdf", PDF)
    html = '<p><img src="cid:logo1"></p>'
    _, msg = build(text="t", html=html, inline_attachments=(logo,), attachments=(doc,))
    assert structure(msg) == (
        "multipart/mixed",
        [
            (
                "multipart/alternative",
                ["text/plain", ("multipart/related", ["text/html", "image/png"])],
            ),
            "application/pdf",
        ],
    )
    alternative = next(msg.iter_parts())
    related = list(alternative.iter_parts())[1]
    assert related.get_param("type") == "text/html"
    html_part, image = related.iter_parts()
    assert body_of(html_part) == html
    assert image["Content-ID"] == "<logo1>"
    assert image.get_content_disposition() == "inline"
    assert image.get_filename() == "logo.png"
    assert image.get_content() == PNG


def test_inline_content_id_in_angle_brackets_is_not_doubled() -> None:
    logo = Attachment("logo.png", "image/png", PNG, content_id="<logo@example.com>")
    _, msg = build(html="<img src='cid:logo@example.com'>", inline_attachments=(logo,))
    assert structure(msg) == ("multipart/related", ["text/html", "image/png"])
    _, image = msg.iter_parts()
    assert image["Content-ID"] == "<logo@example.com>"


def test_inline_attachments_without_html_go_to_mixed() -> None:
    logo = Attachment("logo.png", "image/png", PNG, content_id="logo1")
    _, msg = build(text="see logo", inline_attachments=(logo,))
    assert structure(msg) == ("multipart/mixed", ["text/plain", "image/png"])
    _, image = msg.iter_parts()
    assert image["Content-ID"] == "<logo1>"
    assert image.get_content_disposition() == "inline"


@pytest.mark.parametrize(
    "filename",
    [
        "rapport-été.pdf",
        "東京の写真.jpg",
        "a very long ascii file name that certainly does not fit on one header line.txt",
        "Ünïcödé " * 12 + ".txt",
        'quote " and backslash \\ in name.txt',
        "looks like =?utf-8?q?x?= encoded.txt",
    ],
)
def test_filenames_round_trip_rfc2231(filename: str) -> None:
    att = Attachment(filename, "application/octet-stream", b"data")
    composed, msg = build(text="t", attachments=(att,))
    part = next(iter(msg.iter_attachments()))
    assert part.get_filename() == filename
    assert part.get_param("name") == filename
    assert composed.data.isascii()
    if not filename.isascii() or len(filename) > 50:
        assert b"filename*" in composed.data  # RFC 2231, not RFC 2047 in a quoted string
    header_lines = all_header_lines(composed.data)
    assert any(line.startswith(b"Content-Disposition") for line in header_lines)
    assert all(len(line) <= 78 for line in header_lines), header_lines


def test_content_type_parameters_are_kept() -> None:
    ics = Attachment("invite.ics", "text/calendar; method=REQUEST; charset=UTF-8", b"BEGIN:VCALENDAR\r\n")
    _, msg = build(text="t", attachments=(ics,))
    part = next(iter(msg.iter_attachments()))
    assert part.get_content_type() == "text/calendar"
    assert part.get_param("method") == "REQUEST"
    assert part.get_filename() == "invite.ics"


def test_composite_content_types_are_sent_as_opaque_data() -> None:
    att = Attachment("fwd.eml", "message/rfc822", b"Subject: x\r\n\r\nbody\r\n")
    weird = Attachment("x.bin", "multipart/mixed; boundary=abc", b"--abc--")
    _, msg = build(text="t", attachments=(att, weird))
    parts = list(msg.iter_attachments())
    assert [p.get_content_type() for p in parts] == ["application/octet-stream"] * 2
    assert parts[0].get_content() == att.content


def test_content_type_is_normalised_to_lower_case() -> None:
    att = Attachment("a.PDF", "Application/PDF", b"x")
    _, msg = build(text="t", attachments=(att,))
    assert next(iter(msg.iter_attachments())).get_content_type() == "application/pdf"


def test_boundary_never_occurs_in_content(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter(["=_" + "00" * 12, "=_" + "11" * 12, "=_" + "22" * 12, "=_" + "33" * 12])
    monkeypatch.setattr(_mime, "_random_boundary", lambda: next(draws))
    colliding = "--=_" + "00" * 12  # what the first random draw would produce
    composed, msg = build(text=colliding, html="<p>h</p>")
    assert msg.get_boundary() == "=_" + "11" * 12
    text_part, _ = msg.iter_parts()
    assert body_of(text_part) == colliding
    assert_wire_format(composed.data)


def test_boundaries_are_unique_per_multipart() -> None:
    logo = Attachment("logo.png", "image/png", PNG, content_id="logo1")
    _, msg = build(text="t", html="h", inline_attachments=(logo,), attachments=(logo,))
    boundaries = [p.get_boundary() for p in msg.walk() if p.is_multipart()]
    assert len(boundaries) == 3 and len(set(boundaries)) == 3
