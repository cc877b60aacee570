"""Property test: arbitrary Unicode subjects, names and bodies compose, parse back equal, are wire-safe."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstack.compose import ComposeSettings, compose, parse_verp
from mailstack.model import Address, Attachment, Envelope, MessageSpec, RecipientKind
from mailstack.tokens import TokenSigner

SETTINGS = ComposeSettings(
    hostname="mailstack.example.com",
    bounce_domain="bounces.example.com",
    tokens=TokenSigner(b"compose-test-secret-0123456789ab"),
    unsubscribe_base_url="https://t.example.com",
)
NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)

# Header text: anything but CR, LF, NUL (rejected by design) and lone surrogates (not encodable).
# ASCII full of RFC 5322 specials, spaces and encoded-word lookalikes stresses quoting and folding.
header_text = st.text(
    st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]), max_size=120
) | st.text(st.sampled_from(list(" \t!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~aZ09=?é")), max_size=120)
body_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=1500)
locals_ = st.sampled_from(["alice", "o'neil.x", "jösé", "用户", "john doe"])
domains = st.sampled_from(["example.org", "bücher.example"])


def raw_header(data: bytes, name: str) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in re.split(rb"\r\n(?![ \t])", head):
        key, _, value = line.partition(b":")
        if key.decode().lower() == name.lower():
            return re.sub(r"\r\n([ \t])", r"\1", value.decode("utf-8")).strip()
    raise KeyError(name)


def rfc2047_display_names(data: bytes, name: str) -> list[str]:
    # CPython's policy.default keeps whitespace between adjacent encoded words in display names (RFC 2047
    # 6.2 says to drop it), so names are decoded with the RFC-conformant legacy decoder.
    return [str(make_header(decode_header(n))) for n, _ in email.utils.getaddresses([raw_header(data, name)])]


def normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def content(part: MIMEPart) -> str:
    value = part.get_content()
    assert isinstance(value, str)
    return normalise(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=header_text,
    name=header_text,
    text=body_text,
    html=st.none() | body_text,
    local=locals_,
    domain=domains,
    kind=st.sampled_from(list(RecipientKind)),
    filename=st.none() | header_text.filter(bool),
    message_id=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_compose_round_trip(
    subject: str,
    name: str,
    text: str,
    html: str | None,
    local: str,
    domain: str,
    kind: RecipientKind,
    filename: str | None,
    message_id: int,
) -> None:
    recipient = Address(f"{local}@{domain}", name)
    other = Address("other@example.net", "Other")
    to, cc, bcc = {
        RecipientKind.TO: ((recipient,), (other,), ()),
        RecipientKind.CC: ((other,), (recipient,), ()),
        RecipientKind.BCC: ((other,), (), (recipient,)),
    }[kind]
    attachments = () if filename is None else (Attachment(filename, "application/octet-stream", b"\x00\xff"),)
    spec = MessageSpec(
        sender=Address("news@example.com", name),
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
        bulk=True,
    )
    composed = compose(Envelope(message_id, "", recipient, kind, spec), SETTINGS, now=NOW)
    data = composed.data

    # Wire format: CRLF everywhere, nothing over 998 octets, header lines short unless unbreakable.
    assert data.endswith(b"\r\n")
    for line in data.split(b"\r\n")[:-1]:
        assert b"\r" not in line and b"\n" not in line
        assert len(line) <= 998
    assert composed.smtputf8 == (not local.isascii())
    # Only an internationalised local part makes the bytes non-ASCII; a Bcc recipient's is not in them.
    assert data.isascii() == (not composed.smtputf8 or kind is RecipientKind.BCC)
    assert parse_verp(composed.mail_from, SETTINGS) == message_id

    if composed.smtputf8:
        msg = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    else:
        msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)

    assert msg["Subject"] == subject
    assert rfc2047_display_names(data, "From") == [name]
    assert msg["Message-ID"] == composed.message_id
    assert "Bcc" not in msg
    if kind is RecipientKind.BCC:
        assert local.encode() not in data
    else:
        field = "To" if kind is RecipientKind.TO else "Cc"
        assert name in rfc2047_display_names(data, field)

    body = next(iter(msg.iter_parts())) if attachments else msg
    if text and html:
        assert body.get_content_type() == "multipart/alternative"
        text_part, html_part = body.iter_parts()
        assert content(text_part) == normalise(text)
        assert content(html_part) == normalise(html)
    elif text or html:
        only = text or html or ""
        assert body.get_content_type() == ("text/plain" if text else "text/html")
        got = content(body)
        if attachments or normalise(only).endswith("\n"):
            assert got == normalise(only)
        else:
            assert got == normalise(only) + "\n"  # a lone top-level body gets its final line break
    if attachments:
        (part,) = msg.iter_attachments()
        # get_filename() strips whitespace; the parsed parameters are exact.
        assert part["Content-Disposition"].params["filename"] == filename
        assert part["Content-Type"].params["name"] == filename
        assert part.get_content() == b"\x00\xff"
