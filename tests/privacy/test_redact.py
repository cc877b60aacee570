"""Taking one address out of shared data: which spellings are found, what a MIME message keeps."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import EmailMessage, Message

import pytest

from mailstack.compose import parse_submission
from mailstack.privacy._redact import AddressPattern, redact_json, redact_message, redact_spec

ANA = "ana.red@example.net"
PATTERN = AddressPattern(ANA)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ana.red@example.net.", "write to erased@invalid."),
        ("<ANA.Red@Example.NET>", "<erased@invalid>"),
        ("https://x.example/u?e=ana.red%40example.net&x=1", "https://x.example/u?e=erased%40invalid&x=1"),
        ("ana.red&#64;example.net", "erased&#64;invalid"),
        ("unsub+ana.red@example.net", "unsub+erased@invalid"),  # a tag quoting the address
        ("receipt-ana.red@example.net", "receipt-erased@invalid"),
        ("joana.red@example.net", "joana.red@example.net"),  # another mailbox
        ("ana.red@example.network", "ana.red@example.network"),
        ("ana.red@example.net.example", "ana.red@example.net.example"),
    ],
)
def test_the_address_is_found_in_its_spellings_and_only_there(text: str, expected: str) -> None:
    assert PATTERN.sub(text) == expected
    assert PATTERN.sub_bytes(text.encode()) == expected.encode()


def test_an_internationalised_domain_is_found_in_both_forms() -> None:
    pattern = AddressPattern("zoë@bücher.example")
    assert pattern.sub("zoë@xn--bcher-kva.example, ZOË@BÜCHER.example") == "erased@invalid, erased@invalid"
    assert pattern.is_address("Zoë@xn--bcher-kva.example")


def build(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "News <news@example.com>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return message


def as_bytes(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_address_fields_lose_the_mailbox_and_keep_everyone_else() -> None:
    message = build(
        To=f"Ana <{ANA}>, Zoë Müller <zoe@example.org>",
        Cc=f"team: {ANA}, bob@example.org;, {ANA}",
        Reply_To=ANA,
        Sender=ANA,
        Disposition_Notification_To=ANA,
        Subject="hello",
    )
    message.set_content("no address here\n")
    data = redact_message(as_bytes(message), PATTERN)
    result = parsed(data)
    assert result["To"] == "Zoë Müller <zoe@example.org>"  # re-encoded (RFC 2047) as it came
    assert result["Cc"] == "team: bob@example.org;"
    assert result["Reply-To"] is None and result["Sender"] is None
    assert result["Disposition-Notification-To"] is None
    assert result["From"] == "News <news@example.com>" and result["Subject"] == "hello"
    assert ANA not in data.decode()
    parse_submission(data)  # still a message ingress would accept


def test_the_only_to_becomes_undisclosed_and_from_is_never_changed() -> None:
    message = EmailMessage()
    message["From"] = f"Ana <{ANA}>"  # the sender: on the operator's own domains, what DKIM signs for
    message["To"] = ANA
    message.set_content("x\n")
    result = parsed(redact_message(as_bytes(message), PATTERN))
    assert result["To"] == "undisclosed-recipients:;" and result["From"] == f"Ana <{ANA}>"


def test_utf8_headers_stay_utf8() -> None:
    data = (
        "From: news@example.com\r\nTo: Zoë <zoë@bücher.example>, ana.red@example.net\r\n"
        "Subject: für ana.red@example.net\r\n\r\nbody\r\n"
    ).encode()
    result = redact_message(data, PATTERN)
    assert result == ("From: news@example.com\r\nTo: Zoë <zoë@bücher.example>\r\n"
                      "Subject: für erased@invalid\r\n\r\nbody\r\n").encode()  # fmt: skip


def test_a_message_that_does_not_mention_the_address_is_left_byte_for_byte() -> None:
    message = build(To="bob@example.org", Subject="=?utf-8?q?caf=C3=A9?=")
    message.set_content("Hello café\n", cte="quoted-printable")
    message.add_attachment(b"%PDF-1.4 binary", maintype="application", subtype="pdf", filename="a.pdf")
    data = as_bytes(message)
    assert redact_message(data, PATTERN) == data


def test_text_parts_are_decoded_redacted_and_encoded_again_the_same_way() -> None:
    message = build(To="bob@example.org", Subject=f"Re: {ANA} – déjà vu")  # noqa: RUF001 - non-ASCII on purpose
    message.set_content(f"Hi {ANA}, ça va?\n" + "long line " * 20 + "\n", cte="quoted-printable")
    message.add_alternative(f"<a href='mailto:{ANA}'>x</a> é\n", subtype="html", cte="base64")
    message.add_attachment(f"name;email\nAna;{ANA}\n".encode("latin-1"), "text", "csv", filename="l.csv")
    message.add_attachment(f"Grüße an {ANA}\n", subtype="x-note", charset="iso-8859-1", cte="8bit")
    forwarded = build(To=ANA, Subject="forwarded")
    forwarded.set_content(f"inner {ANA}\n", cte="base64")
    message.add_attachment(forwarded)
    message.add_attachment(b"%PDF " + ANA.encode(), maintype="application", subtype="pdf", filename="a.pdf")
    original = as_bytes(message)
    data = redact_message(original, PATTERN)
    result = parsed(data)
    assert result["Subject"] == "Re: erased@invalid – déjà vu"  # noqa: RUF001
    bodies: dict[str, Message] = {}
    for part in result.walk():
        bodies.setdefault(part.get_content_type(), part)  # the outer message's parts come first
    before = next(part for part in parsed(original).walk() if part.get_content_type() == "text/plain")
    assert bodies["text/plain"].get_content() == before.get_content().replace(ANA, "erased@invalid")
    assert bodies["text/plain"]["Content-Transfer-Encoding"] == "quoted-printable"
    assert bodies["text/html"].get_content() == "<a href='mailto:erased@invalid'>x</a> é\n"
    assert bodies["text/html"]["Content-Transfer-Encoding"] == "base64"
    assert bodies["text/csv"].get_payload(decode=True) == b"name;email\nAna;erased@invalid\n"
    assert bodies["text/x-note"].get_payload(decode=True) == "Grüße an erased@invalid\r\n".encode("latin-1")
    inner = bodies["message/rfc822"].get_content()
    assert inner["To"] == "undisclosed-recipients:;"
    assert inner.get_payload(decode=True) == b"inner erased@invalid\n"
    # Not covered: what is not text (a PDF, an image) is left as it is.
    assert b"%PDF " + ANA.encode() == bodies["application/pdf"].get_payload(decode=True)
    # Everything else kept: the boundaries, the other headers, every line of the structure.
    assert data.count(b"\r\n--") == original.count(b"\r\n--")
    assert redact_message(data, PATTERN) == data  # nothing left to do
    parse_submission(data)


def test_a_charset_python_does_not_know_is_searched_as_bytes() -> None:
    data = (
        b"From: news@example.com\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n"
        b"\xfe\xff ana.red@example.net\r\n"
    )
    assert redact_message(data, PATTERN).endswith(b"\r\n\r\n\xfe\xff erased@invalid\r\n")


def test_json_loses_the_persons_entries_and_the_address_in_every_string() -> None:
    response = {
        "Messages": [
            {
                "Status": "success",
                "CustomID": f"for {ANA}",
                "To": [
                    {"Email": ANA.upper(), "MessageUUID": "u1", "MessageID": 1},
                    {"Email": "bob@example.org", "MessageUUID": "u2", "MessageID": 2},
                ],
            }
        ]
    }
    assert redact_json(response, PATTERN) == {
        "Messages": [
            {
                "Status": "success",
                "CustomID": "for erased@invalid",
                "To": [{"Email": "bob@example.org", "MessageUUID": "u2", "MessageID": 2}],
            }
        ]
    }
    events = [
        {"event": "open", "email": "bob@example.org", "MessageID": 2},
        {"event": "open", "MessageID": 7},
    ]
    assert redact_json(events, PATTERN, {7}) == events[:1]  # one of the person's messages


def test_a_spec_keeps_its_sender_and_drops_the_persons_optional_addresses() -> None:
    raw = f"From: news@example.com\r\nTo: {ANA}, bob@example.org\r\n\r\nHi {ANA}\r\n".encode()
    spec = {
        "From": {"Email": "news@example.com", "Name": ANA},
        "To": [{"Email": ANA, "Name": "Ana"}, {"Email": "bob@example.org", "Name": ""}],
        "ReplyTo": {"Email": ANA, "Name": ""},
        "TemplateErrorReporting": {"Email": ANA, "Name": ""},
        "Subject": f"About {ANA}",
        "Variables": {"who": ANA},
        "Attachments": [
            {
                "ContentType": "text/plain",
                "Filename": "a.txt",
                "Base64Content": base64.b64encode(ANA.encode()).decode(),
            }
        ],
        "Raw": base64.b64encode(raw).decode(),
    }
    clean = redact_spec(spec, PATTERN)
    assert clean["From"] == spec["From"]
    assert clean["To"] == [{"Email": "bob@example.org", "Name": ""}]
    assert clean["ReplyTo"] is None and clean["TemplateErrorReporting"] is None
    assert (clean["Subject"], clean["Variables"]) == ("About erased@invalid", {"who": "erased@invalid"})
    assert base64.b64decode(clean["Attachments"][0]["Base64Content"]) == b"erased@invalid"
    assert (
        base64.b64decode(clean["Raw"])
        == b"From: news@example.com\r\nTo: bob@example.org\r\n\r\nHi erased@invalid\r\n"
    )


def test_preamble_epilogue_and_parts_without_body_or_header_stay_as_they_were() -> None:
    data = (
        b"From: news@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"preamble\r\n--b\r\nContent-Type: text/plain\r\n--b\r\n\r\nhi ana.red@example.net\r\n"
        b"--b--\r\nepilogue"
    )
    assert redact_message(data, PATTERN) == data.replace(b"ana.red@example.net", b"erased@invalid")
    assert redact_message(b"From: news@example.com\r\nTo: bob@example.org", PATTERN) == (
        b"From: news@example.com\r\nTo: bob@example.org"
    )
