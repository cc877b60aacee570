"""Header injection and header override attempts must raise ComposeError naming the field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from compose_helpers import NOW, make_envelope, make_settings

from mailstack.compose import ComposeError, compose
from mailstack.model import Address, Attachment, Envelope

BAD_SEQUENCES = ["\r", "\n", "\r\n", "\x00", "\r\nBcc: victim@example.com"]


def attachment(**kw: Any) -> Attachment:
    kw.setdefault("filename", "a.pdf")
    kw.setdefault("content_type", "application/pdf")
    kw.setdefault("content", b"%PDF")
    return Attachment(**kw)


# Each case: field name expected in the error, and a function building the envelope around a bad string.
CASES: list[tuple[str, Callable[[str], Envelope]]] = [
    ("From.Name", lambda s: make_envelope(sender=Address("news@example.com", f"News{s}"))),
    ("From.Email", lambda s: make_envelope(sender=Address(f"news{s}@example.com"))),
    ("Sender.Name", lambda s: make_envelope(envelope_sender=Address("ops@example.com", f"Ops{s}"))),
    ("Sender.Email", lambda s: make_envelope(envelope_sender=Address(f"ops@example.com{s}"))),
    ("ReplyTo.Name", lambda s: make_envelope(reply_to=Address("r@example.com", f"R{s}"))),
    ("ReplyTo.Email", lambda s: make_envelope(reply_to=Address(f"r{s}@example.com"))),
    ("To[1].Name", lambda s: make_envelope(to=(Address("a@example.org"), Address("b@example.org", f"B{s}")))),
    ("To[0].Email", lambda s: make_envelope(to=(Address(f"a@example.org{s}"),))),
    ("Cc[0].Name", lambda s: make_envelope(cc=(Address("c@example.org", f"{s}C"),))),
    ("Cc[0].Email", lambda s: make_envelope(cc=(Address(f"c{s}@example.org"),))),
    ("Bcc[0].Name", lambda s: make_envelope(bcc=(Address("d@example.org", f"D{s}"),))),
    ("Bcc[0].Email", lambda s: make_envelope(bcc=(Address(f"d@example.org{s}"),))),
    ("Subject", lambda s: make_envelope(subject=f"Hi{s}there")),
    ("Headers[0].Name", lambda s: make_envelope(headers=((f"X-Foo{s}", "v"),))),
    ("Headers[1].Value", lambda s: make_envelope(headers=(("X-A", "ok"), ("X-Foo", f"v{s}x")))),
    ("Attachments[0].Filename", lambda s: make_envelope(attachments=(attachment(filename=f"a{s}.pdf"),))),
    (
        "Attachments[0].ContentType",
        lambda s: make_envelope(attachments=(attachment(content_type=f"application/pdf{s}"),)),
    ),
    (
        "InlinedAttachments[0].ContentID",
        lambda s: make_envelope(html="h", inline_attachments=(attachment(content_id=f"logo{s}"),)),
    ),
    (
        "InlinedAttachments[0].Filename",
        lambda s: make_envelope(html="h", inline_attachments=(attachment(filename=f"{s}x", content_id="c"),)),
    ),
    ("message_uuid", lambda s: replace(make_envelope(), message_uuid=f"uuid{s}")),
    ("Recipient.Email", lambda s: replace(make_envelope(), recipient=Address(f"x@example.org{s}"))),
]


@pytest.mark.parametrize("bad", BAD_SEQUENCES, ids=repr)
@pytest.mark.parametrize(("field", "build"), CASES, ids=[c[0] for c in CASES])
def test_injection_rejected(field: str, build: Callable[[str], Envelope], bad: str) -> None:
    envelope = build(bad)
    with pytest.raises(ComposeError) as excinfo:
        compose(envelope, make_settings(), now=NOW)
    assert field in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_valid_baseline_of_every_case_composes() -> None:
    # The same builders with a harmless string compose fine, so the failures above are the bad bytes.
    for _, build in CASES:
        compose(build("x"), make_settings(), now=NOW)


RESERVED = [
    "From",
    "to",
    "CC",
    "Bcc",
    "Date",
    "Message-ID",
    "message-id",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "content-disposition",
    "Content-ID",
    "DKIM-Signature",
    "Return-Path",
    "Received",
    "Sender",
    "Authentication-Results",
    "ARC-Seal",
]


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_headers_cannot_be_overridden(name: str) -> None:
    with pytest.raises(ComposeError, match=r"Headers\[0\]\.Name"):
        compose(make_envelope(headers=((name, "x@example.com"),)), make_settings(), now=NOW)


@pytest.mark.parametrize("name", ["List-Unsubscribe", "List-Unsubscribe-Post"])
def test_bulk_mail_keeps_its_own_unsubscribe_headers(name: str) -> None:
    with pytest.raises(ComposeError, match=r"Headers\[0\]\.Name"):
        compose(
            make_envelope(campaign="autumn", headers=((name, "<mailto:x@example.com>"),)), make_settings()
        )


def test_transactional_mail_may_bring_its_own_unsubscribe_header() -> None:
    composed = compose(
        make_envelope(headers=(("List-Unsubscribe", "<mailto:leave@example.com>"),)), make_settings(), now=NOW
    )
    assert b"\r\nList-Unsubscribe: <mailto:leave@example.com>\r\n" in composed.data
    assert composed.data.count(b"List-Unsubscribe:") == 1


@pytest.mark.parametrize("name", ["X Foo", "X:Foo", "", "Xé", "X\tFoo", "X\x7fFoo", "X-Foo:"])
def test_invalid_header_names_rejected(name: str) -> None:
    with pytest.raises(ComposeError, match=r"Headers\[0\]\.Name"):
        compose(make_envelope(headers=((name, "v"),)), make_settings(), now=NOW)


def test_singleton_headers_cannot_conflict_or_repeat() -> None:
    with pytest.raises(ComposeError, match="Subject"):
        compose(make_envelope(subject="Hi", headers=(("Subject", "Other"),)), make_settings(), now=NOW)
    with pytest.raises(ComposeError, match=r"(?i)reply-to"):
        spec_kw: dict[str, Any] = {"reply_to": Address("r@example.com"), "headers": (("reply-to", "x@y.z"),)}
        compose(make_envelope(**spec_kw), make_settings(), now=NOW)
    with pytest.raises(ComposeError, match="only once"):
        compose(make_envelope(headers=(("References", "<a@b>"), ("references", "<c@d>"))), make_settings())


@pytest.mark.parametrize(
    "email",
    ["no-at-sign", "@example.com", "user@", "user@exa mple.com", "user@exa<mple.com", "us\ter@example.com"],
)
def test_malformed_addresses_rejected(email: str) -> None:
    with pytest.raises(ComposeError, match=r"To\[0\]\.Email"):
        compose(make_envelope(to=(Address(email),)), make_settings(), now=NOW)


@pytest.mark.parametrize(
    "content_type", ["pdf", "application/", "application/pdf; x", "a/b c", "täxt/plain", ""]
)
def test_malformed_content_types_rejected(content_type: str) -> None:
    with pytest.raises(ComposeError, match=r"Attachments\[0\]\.ContentType"):
        compose(make_envelope(attachments=(attachment(content_type=content_type),)), make_settings(), now=NOW)


@pytest.mark.parametrize("cid", ["with space", "a<b", "a>b", "ünï", "a\tb", '"q"'])
def test_malformed_content_ids_rejected(cid: str) -> None:
    env = make_envelope(html="h", inline_attachments=(attachment(content_id=cid),))
    with pytest.raises(ComposeError, match=r"InlinedAttachments\[0\]\.ContentID"):
        compose(env, make_settings(), now=NOW)


def test_lone_surrogates_in_body_rejected() -> None:
    with pytest.raises(ComposeError, match="HTMLPart"):
        compose(make_envelope(html="bad \udc80 surrogate"), make_settings(), now=NOW)


def test_unicode_line_separators_cannot_break_headers() -> None:
    # U+2028, NEL, VT and FF are line breaks for str.splitlines(); they must be encoded, never raw.
    tricky = "a\u2028Bcc: x@example.com\x85\x0b\x0c\x1c b"
    composed = compose(
        make_envelope(subject=tricky, sender=Address("n@example.com", tricky)), make_settings()
    )
    head = composed.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"\nBcc" not in head and b"\x0b" not in head and b"\x0c" not in head
