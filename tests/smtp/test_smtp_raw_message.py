"""Submitted messages: ingress checks and fix-ups (parse_submission), delivery fix-ups (compose), storage."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime

import pytest

from mailstack.compose import ComposeError, ComposeSettings, compose, parse_submission, parse_verp
from mailstack.model import Address, Envelope, MessageSpec, RecipientKind
from mailstack.tokens import TokenSigner

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
SETTINGS = ComposeSettings(
    hostname="mail.example.com", bounce_domain="bounces.example.com", tokens=TokenSigner(b"s" * 32)
)
BODY = b"Hello Ana,\r\n\r\n.leading dot and trailing space \r\n\r\n-- \r\nNews\r\n"


def message(*headers: str, body: bytes = BODY) -> bytes:
    return "".join(h + "\r\n" for h in headers).encode() + b"\r\n" + body


STANDARD = (
    "From: News <news@example.com>",
    "To: Ana <ana@example.net>",
    "Cc: bob@example.org",
    "Subject: Your order",
)


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return [line.split(b":", 1)[0].decode() for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]


def envelope(raw: bytes, message_id: int = 7, recipient: str = "ana@example.net") -> Envelope:
    spec = MessageSpec(sender=Address("news@example.com"), to=(Address(recipient),), raw=raw)
    return Envelope(message_id, f"uuid-{message_id}", Address(recipient), RecipientKind.TO, spec)


def test_bcc_foreign_signatures_and_return_path_are_stripped_everything_else_kept_byte_for_byte() -> None:
    data = message(
        "Return-Path: <bounce@elsewhere.example>",
        "DKIM-Signature: v=1; a=rsa-sha256; d=elsewhere.example; s=x;",
        "\tb=AAAA",
        *STANDARD,
        "Bcc: hidden@example.org,",
        " other-hidden@example.org",
        "Resent-Bcc: resent-hidden@example.org",
        "Date: Sun, 01 Mar 2026 10:00:00 +0100",
        "X-Order:   42  ",
        "Content-Type: text/plain; charset=utf-8",
    )
    submission = parse_submission(data, now=NOW)
    assert header_names(submission.data) == [
        "From",
        "To",
        "Cc",
        "Subject",
        "Date",
        "X-Order",
        "Content-Type",
    ]
    assert b"hidden" not in submission.data and b"elsewhere" not in submission.data
    assert b"\r\nX-Order:   42  \r\n" in submission.data  # values untouched, whitespace included
    assert submission.data.endswith(b"\r\n\r\n" + BODY)  # the body exactly as submitted
    assert submission.sender == Address("news@example.com", "News")
    assert submission.to == frozenset({"ana@example.net"})
    assert submission.cc == frozenset({"bob@example.org"})
    assert submission.subject == "Your order"


def test_a_missing_date_is_added_and_an_existing_one_kept() -> None:
    added = parse_submission(message(*STANDARD), now=NOW)
    assert added.data.startswith(b"Date: Sun, 01 Mar 2026 12:30:00 +0000\r\n")
    kept = parse_submission(message(*STANDARD, "Date: Sun, 1 Mar 2026 09:00:00 -0500"), now=NOW)
    assert kept.data.count(b"Date:") == 1 and b"Date: Sun, 1 Mar 2026 09:00:00 -0500\r\n" in kept.data


def test_encoded_subject_and_names_are_decoded_for_storage() -> None:
    submission = parse_submission(
        message(
            "From: =?utf-8?q?Ex=C3=A4mple?= <news@example.com>",
            "To: ana@example.net",
            "Subject: =?utf-8?b?w5xiZXI=?= uns",
        ),
        now=NOW,
    )
    assert submission.sender == Address("news@example.com", "Exämple")
    assert submission.subject == "Über uns"


def test_utf8_headers_rfc6532_are_accepted() -> None:
    submission = parse_submission(
        message("From: Exämple <news@example.com>", "To: ana@example.net", "Subject: Grüße"), now=NOW
    )
    assert submission.subject == "Grüße" and "Grüße".encode() in submission.data


MALFORMED = {
    "bare LF": message(*STANDARD).replace(b"Hello Ana,\r\n", b"Hello Ana,\n"),
    "bare CR": message(*STANDARD).replace(b"Hello Ana,\r\n", b"Hello Ana,\r"),
    "LF dot LF": message(*STANDARD, body=b"one\n.\nMAIL FROM:<x@example.com>\r\n"),
    "no header": b"\r\nbody only\r\n",
    "line without colon": message("From: news@example.com", "To ana@example.net", "Subject: x"),
    "space before colon": message("From : news@example.com", "Subject: x"),
    "continuation first": message(" folded", *STANDARD),
    "whitespace-only continuation": message("From: news@example.com", "Subject: x", "   "),
    "NUL in header": message("From: news@example.com", "Subject: a\x00b"),
    "8-bit not UTF-8": message(*STANDARD).replace(b"Your order", b"Caf\xe9"),
    "no From": message("To: ana@example.net", "Subject: x"),
    "two From fields": message(*STANDARD, "From: ceo@example.com"),
    "two Subject fields": message(*STANDARD, "Subject: other"),
    "two To fields": message(*STANDARD, "To: victim@example.org"),
    "two mailboxes in From": message("From: news@example.com, ceo@example.com", "Subject: x"),
    "group From": message("From: undisclosed:;", "Subject: x"),
    "From without domain": message("From: news", "Subject: x"),
    "unparsable From": message("From: <news@example.com", "Subject: x"),
    "line over 998": message(*STANDARD, "X-Long: " + "a" * 1000),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_or_ambiguous_messages_are_refused(data: bytes) -> None:
    with pytest.raises(ComposeError):
        parse_submission(data, now=NOW)


def test_compose_adds_a_message_id_per_copy_and_the_verp_return_path() -> None:
    stored = parse_submission(message(*STANDARD), now=NOW).data
    first = compose(envelope(stored, 7), SETTINGS, now=NOW)
    second = compose(envelope(stored, 8, "bob@example.org"), SETTINGS, now=NOW)
    assert first.message_id == "<uuid-7.7@mail.example.com>"
    assert second.message_id == "<uuid-8.8@mail.example.com>"
    assert first.data.startswith(b"Message-ID: <uuid-7.7@mail.example.com>\r\n")
    assert parse_verp(first.mail_from, SETTINGS) == 7 and parse_verp(second.mail_from, SETTINGS) == 8
    assert (first.rcpt_to, second.rcpt_to) == ("ana@example.net", "bob@example.org")
    # Everything else is the stored message, unchanged; a retry composes the very same bytes.
    assert first.data.split(b"\r\n", 1)[1] == stored
    assert compose(envelope(stored, 7), SETTINGS, now=NOW).data == first.data
    assert not first.smtputf8


def test_compose_keeps_the_clients_message_id() -> None:
    stored = parse_submission(message(*STANDARD, "Message-ID: <order-42@shop.example.com>"), now=NOW).data
    composed = compose(envelope(stored), SETTINGS, now=NOW)
    assert composed.message_id == "<order-42@shop.example.com>"
    assert composed.data == stored


def test_compose_replaces_an_empty_message_id() -> None:
    stored = parse_submission(message(*STANDARD, "Message-ID:"), now=NOW).data
    composed = compose(envelope(stored), SETTINGS, now=NOW)
    parsed = email.message_from_bytes(composed.data, policy=email.policy.default)
    assert parsed.get_all("Message-ID") == ["<uuid-7.7@mail.example.com>"]


def test_compose_checks_and_strips_again_at_delivery() -> None:
    # Defence in depth: stored content that predates a rule (or was tampered with) is checked again.
    bcc = message(*STANDARD, "Bcc: hidden@example.org", "Date: Sun, 01 Mar 2026 10:00:00 +0100")
    assert b"hidden" not in compose(envelope(bcc), SETTINGS, now=NOW).data
    with pytest.raises(ComposeError):
        compose(envelope(message(*STANDARD, "From: ceo@example.com")), SETTINGS, now=NOW)
    with pytest.raises(ComposeError):
        compose(envelope(message(*STANDARD).replace(b"\r\n\r\n", b"\n\n")), SETTINGS, now=NOW)


def test_utf8_headers_ask_the_relay_for_smtputf8() -> None:
    stored = parse_submission(message("From: news@example.com", "Subject: Grüße"), now=NOW).data
    assert compose(envelope(stored), SETTINGS, now=NOW).smtputf8


def test_a_submitted_message_survives_storage_as_json() -> None:
    raw = parse_submission(message(*STANDARD), now=NOW).data + b"\xff binary \x00 tail\r\n"
    spec = MessageSpec(
        sender=Address("news@example.com", "News"),
        to=(Address("ana@example.net"),),
        bcc=(Address("hidden@example.org"),),
        subject="Your order",
        raw=raw,
    )
    stored = json.loads(json.dumps(spec.to_json()))
    assert MessageSpec.from_json(stored) == spec
    assert "raw=" not in repr(spec)  # a whole message never lands in a log line or traceback
    # API messages keep their stored shape: no Raw key at all.
    api = MessageSpec(sender=Address("news@example.com"), to=(Address("ana@example.net"),), text="hi")
    assert "Raw" not in api.to_json() and MessageSpec.from_json(api.to_json()).raw is None
