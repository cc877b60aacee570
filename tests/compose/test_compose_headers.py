"""Headers, addresses (IDN, SMTPUTF8), Message-ID, List-Unsubscribe and VERP of mailstack.compose."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import pytest
from compose_helpers import NOW, SECRET, UUID, assert_wire_format, make_envelope, make_settings

from mailstack.compose import (
    ComposedMessage,
    ComposeError,
    ComposeSettings,
    compose,
    parse_verp,
    verp_address,
)
from mailstack.model import Address, Envelope, RecipientKind
from mailstack.tokens import TokenSigner


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def build_env(env: Envelope, settings: ComposeSettings | None = None) -> tuple[ComposedMessage, EmailMessage]:
    composed = compose(env, settings or make_settings(), now=NOW)
    assert_wire_format(composed.data)
    msg = email.message_from_bytes(composed.data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return composed, msg


def build(**kw: Any) -> tuple[ComposedMessage, EmailMessage]:
    return build_env(make_envelope(**kw))


def raw_header(data: bytes, name: str) -> str:
    """The unfolded raw value of a header, without any decoding."""
    for line in re.split(rb"\r\n(?![ \t])", header_block(data)):
        key, _, value = line.partition(b":")
        if key.decode().lower() == name.lower():
            return re.sub(r"\r\n([ \t])", r"\1", value.decode("utf-8")).strip()
    raise KeyError(name)


def rfc2047_names(data: bytes, name: str) -> list[tuple[str, str]]:
    """Display names decoded per RFC 2047 6.2 (whitespace between adjacent encoded words is dropped).

    policy.default does not drop it inside display names (CPython's own round trip of long names is
    lossy), so multi-word encodings are checked with the legacy, RFC-conformant decoder.
    """
    pairs = email.utils.getaddresses([raw_header(data, name)])
    return [(str(make_header(decode_header(n))), a) for n, a in pairs]


# --- basic headers -----------------------------------------------------------------------------


def test_standard_headers_present_and_ordered() -> None:
    composed, msg = build(
        cc=(Address("carol@example.net", "Carol"),),
        reply_to=Address("support@example.com", "Support"),
    )
    names = [line.split(b":")[0] for line in header_block(composed.data).split(b"\r\n") if line[:1].isalpha()]
    assert names[:8] == [
        b"Date",
        b"From",
        b"Reply-To",
        b"To",
        b"Cc",
        b"Subject",
        b"Message-ID",
        b"MIME-Version",
    ]
    assert msg["From"] == "Example News <news@example.com>"
    assert msg["To"] == "Alice <alice@example.org>"
    assert msg["Cc"] == "Carol <carol@example.net>"
    assert msg["Reply-To"] == "Support <support@example.com>"
    assert msg["Subject"] == "Hello"
    assert "Sender" not in msg and "Bcc" not in msg


def test_date_comes_from_now() -> None:
    composed, msg = build()
    assert msg["Date"].datetime == NOW
    assert raw_header(composed.data, "Date") == "Wed, 01 May 2024 12:30:00 +0000"
    local = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    composed = compose(make_envelope(), make_settings(), now=local)
    assert raw_header(composed.data, "Date") == "Wed, 01 May 2024 14:30:00 +0200"
    naive = compose(make_envelope(), make_settings(), now=datetime(2024, 5, 1, 12, 30))
    assert raw_header(naive.data, "Date").endswith("+0000")


def test_date_defaults_to_current_time() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    composed = compose(make_envelope(), make_settings())
    msg = email.message_from_bytes(composed.data, policy=email.policy.default)
    assert before <= msg["Date"].datetime <= datetime.now(UTC)


def test_sender_only_when_different_from_from() -> None:
    _, msg = build(envelope_sender=Address("ops@example.com", "Ops"))
    assert msg["Sender"] == "Ops <ops@example.com>"
    _, msg = build(envelope_sender=Address("news@EXAMPLE.com", "Other name"))
    assert "Sender" not in msg


def test_bcc_never_in_headers_and_bcc_copy_shows_same_to_cc() -> None:
    to = (Address("alice@example.org", "Alice"),)
    cc = (Address("carol@example.net"),)
    bcc = (Address("secret@example.com", "Secret"), Address("hidden@example.com"))
    copies = []
    for i, (rcpt, kind) in enumerate(
        [(to[0], RecipientKind.TO), (cc[0], RecipientKind.CC)] + [(b, RecipientKind.BCC) for b in bcc]
    ):
        env = make_envelope(message_id=2000 + i, recipient=rcpt, kind=kind, to=to, cc=cc, bcc=bcc)
        composed, msg = build_env(env)
        assert composed.rcpt_to == rcpt.email
        assert b"secret@example.com" not in composed.data
        assert b"hidden@example.com" not in composed.data
        assert "Bcc" not in msg
        copies.append((raw_header(composed.data, "To"), raw_header(composed.data, "Cc")))
    assert len(set(copies)) == 1


def test_only_bcc_recipients_get_undisclosed_recipients() -> None:
    bcc = (Address("secret@example.com"),)
    env = make_envelope(to=(), bcc=bcc, recipient=bcc[0], kind=RecipientKind.BCC)
    composed, msg = build_env(env)
    assert raw_header(composed.data, "To") == "undisclosed-recipients:;"
    assert msg["To"].addresses == ()
    assert b"secret@example.com" not in composed.data


def test_cc_without_to_has_no_to_header() -> None:
    cc = (Address("carol@example.net"),)
    _, msg = build_env(make_envelope(to=(), cc=cc, recipient=cc[0], kind=RecipientKind.CC))
    assert "To" not in msg
    assert msg["Cc"] == "carol@example.net"


def test_display_names_with_specials_are_quoted() -> None:
    to = (
        Address("a@example.org", "Doe, John"),
        Address("b@example.org", "John Q. Public"),
        Address("c@example.org", 'Say "hi" \\ bye'),
        Address("d@example.org", "Plain Name"),
    )
    composed, msg = build(to=to)
    assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [(a.name, a.email) for a in to]
    assert b'"Doe, John" <a@example.org>' in composed.data
    assert b"Plain Name <d@example.org>" in composed.data


@pytest.mark.parametrize(
    "name",
    [
        "José",
        "Jürgen Müller",
        "Zoë O'Brien-Łukasiewicz",
        "山田太郎",
        "Иван Петров",
        "🎉 Party 🎉",
        " lead",
        "x  y",
    ],
)
def test_non_ascii_names_round_trip(name: str) -> None:
    composed, msg = build(sender=Address("news@example.com", name), to=(Address("a@example.org", name),))
    assert composed.data.isascii()
    assert rfc2047_names(composed.data, "From") == [(name, "news@example.com")]
    assert rfc2047_names(composed.data, "To") == [(name, "a@example.org")]
    if "  " not in name:  # policy.default collapses runs of spaces in display names, even encoded ones
        assert msg["From"].addresses[0].display_name == name
        assert msg["To"].addresses[0].display_name == name


def test_long_non_ascii_name_is_split_into_valid_encoded_words() -> None:
    name = "Ünïcödé Ñämé " * 8 + "Ende"
    composed, _ = build(to=(Address("a@example.org", name), Address("b@example.org", "B")))
    for word in re.findall(rb"=\?[^?]+\?[qQbB]\?[^?]*\?=", composed.data):
        assert len(word) <= 75
    assert rfc2047_names(composed.data, "To") == [(name, "a@example.org"), ("B", "b@example.org")]
    assert all(len(line) <= 78 for line in header_block(composed.data).split(b"\r\n"))


@pytest.mark.parametrize(
    "subject",
    [
        "Plain ASCII subject",
        "Grüße aus Köln",
        "日本語の件名です、とても長い件名がここに入ります。折り返しが必要です。" * 3,
        "Émoji 🎉🎉🎉 and a very long tail of ascii words to force folding beyond seventy-eight",
        "  leading and trailing  ",
        "tabs\tinside",
        "looks =?utf-8?q?encoded?= but is not",
        "x" * 200,
        "a" + "é" * 100,
    ],
)
def test_subjects_round_trip_and_fold(subject: str) -> None:
    composed, msg = build(subject=subject)
    assert msg["Subject"] == subject
    assert composed.data.isascii()
    for line in header_block(composed.data).split(b"\r\n"):
        if not line.startswith((b"Message-ID", b" <https")):
            assert len(line) <= 78, line
    for word in re.findall(rb"=\?[^?]+\?[qQbB]\?[^?]*\?=", composed.data):
        assert len(word) <= 75
        # never splits a multi-byte character: each encoded word decodes on its own
        str(make_header(decode_header(word.decode())))


def test_empty_subject_still_has_header() -> None:
    composed, msg = build(subject="")
    assert msg["Subject"] == ""
    assert b"\r\nSubject:\r\n" in composed.data


def test_long_address_lists_fold_at_78() -> None:
    to = tuple(Address(f"user{i}@example.org", f"User Number {i}") for i in range(30))
    composed, msg = build(to=to)
    assert len(msg["To"].addresses) == 30
    for line in header_block(composed.data).split(b"\r\n"):
        assert len(line) <= 78


# --- IDN and SMTPUTF8 --------------------------------------------------------------------------


def test_idn_domains_become_a_labels() -> None:
    to = (Address("user@bücher.example", "Bücherwurm"),)
    composed, msg = build(sender=Address("info@exämple.com"), to=to)
    assert composed.rcpt_to == "user@xn--bcher-kva.example"
    assert msg["To"].addresses[0].addr_spec == "user@xn--bcher-kva.example"
    assert msg["From"].addresses[0].addr_spec == "info@xn--exmple-cua.com"
    assert composed.data.isascii()
    assert composed.smtputf8 is False


def test_non_ascii_local_part_uses_raw_utf8_and_smtputf8() -> None:
    to = (Address("jösé@bücher.example", "José"),)
    composed, msg = build(to=to)
    assert composed.smtputf8 is True
    assert composed.rcpt_to == "jösé@xn--bcher-kva.example"
    assert "jösé@xn--bcher-kva.example".encode() in composed.data  # RFC 6532 raw UTF-8
    # BytesParser reads headers as ASCII (surrogateescape); RFC 6532 headers are parsed as text instead.
    msg = email.message_from_string(composed.data.decode("utf-8"), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "jösé@xn--bcher-kva.example"
    assert msg["To"].addresses[0].display_name == "José"
    assert composed.mail_from.isascii()


def test_smtputf8_for_utf8_sender_even_if_recipient_is_ascii() -> None:
    composed, _ = build(sender=Address("ñandú@example.com"))
    assert composed.smtputf8 is True
    assert composed.rcpt_to.isascii()


def test_smtputf8_for_utf8_bcc_recipient_only() -> None:
    bcc = (Address("ünïcödé@example.com"),)
    env = make_envelope(bcc=bcc, recipient=bcc[0], kind=RecipientKind.BCC)
    composed, _ = build_env(env)
    assert header_block(composed.data).isascii()
    assert composed.smtputf8 is True


def test_ascii_everything_is_not_smtputf8() -> None:
    composed, _ = build(subject="Ünïcödé", to=(Address("a@example.org", "Ünïcödé"),))
    assert composed.smtputf8 is False


def test_quoted_local_parts() -> None:
    to = (Address('"john doe"@example.org'), Address("odd..dots@example.org"))
    composed, msg = build(to=to, recipient=to[0])
    assert composed.rcpt_to == '"john doe"@example.org'
    assert [a.username for a in msg["To"].addresses] == ["john doe", "odd..dots"]
    assert b'"odd..dots"@example.org' in composed.data  # not a dot-atom, so it must be quoted


# --- Message-ID --------------------------------------------------------------------------------


def test_message_id_format_and_header() -> None:
    composed, msg = build(message_id=987654321)
    assert composed.message_id == f"<{UUID}.987654321@mailstack.example.com>"
    assert msg["Message-ID"] == composed.message_id


def test_message_id_unique_per_envelope() -> None:
    ids = set()
    for message_id in range(50):
        ids.add(compose(make_envelope(message_id=message_id), make_settings(), now=NOW).message_id)
    for _ in range(50):
        ids.add(compose(make_envelope(uuid=""), make_settings(), now=NOW).message_id)
    assert len(ids) == 100
    assert all(re.fullmatch(r"<[^<>@\s]+@mailstack\.example\.com>", i) for i in ids)


def test_idn_hostname_setting_is_a_label() -> None:
    settings = ComposeSettings("mäil.example.com", "Bounces.Example.COM", TokenSigner(SECRET))
    assert settings.hostname == "xn--mil-qla.example.com"
    assert settings.bounce_domain == "bounces.example.com"
    assert compose(make_envelope(), settings, now=NOW).message_id.endswith("@xn--mil-qla.example.com>")


# --- user headers ------------------------------------------------------------------------------


def test_user_headers_are_appended() -> None:
    headers = (
        ("X-Campaign-Ref", "spring  sale"),
        ("X-Unicode", "Grüße — ok"),
        ("X-Long", " ".join(["token"] * 40)),
        ("X-Empty", ""),
        ("In-Reply-To", "<abc@example.com>"),
    )
    composed, msg = build(headers=headers)
    assert msg["X-Campaign-Ref"] == "spring  sale"
    assert msg["X-Unicode"] == "Grüße — ok"
    assert msg["X-Long"] == " ".join(["token"] * 40)
    assert msg["X-Empty"] == ""
    assert msg["In-Reply-To"] == "<abc@example.com>"
    for line in header_block(composed.data).split(b"\r\n"):
        assert len(line) <= 78


def test_long_user_header_name_with_non_ascii_value_folds_at_78() -> None:
    name = "X-A-Rather-Long-Custom-Header-Name"
    value = "Grüße aus Köln " * 12 + "日本語"
    composed, msg = build(headers=((name, value),))
    assert msg[name] == value
    for line in header_block(composed.data).split(b"\r\n"):
        assert len(line) <= 78, line


def test_user_reply_to_header_allowed_without_spec_reply_to() -> None:
    _, msg = build(headers=(("Reply-To", "Zoë <zoe@example.com>"),))
    assert msg["Reply-To"].addresses[0].display_name == "Zoë"
    assert msg["Reply-To"].addresses[0].addr_spec == "zoe@example.com"


def test_user_subject_header_allowed_when_spec_subject_empty() -> None:
    _, msg = build(subject="", headers=(("Subject", "From headers"),))
    assert msg.get_all("Subject") == ["From headers"]


# --- List-Unsubscribe --------------------------------------------------------------------------


def test_list_unsubscribe_for_bulk() -> None:
    _, msg = build(bulk=True, message_id=4242)
    value = msg["List-Unsubscribe"]
    match = re.fullmatch(
        r"<https://t\.example\.com/unsubscribe/([\w.-]+)>, "
        r"<mailto:unsubscribe\+([\w.-]+)@bounces\.example\.com>",
        value,
    )
    assert match, value
    assert match.group(1) == match.group(2)
    assert TokenSigner(SECRET).verify("unsubscribe", match.group(1)) == "4242"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_list_unsubscribe_for_campaign() -> None:
    _, msg = build(campaign="spring-2024")
    assert "List-Unsubscribe" in msg
    assert "List-Unsubscribe-Post" in msg


def test_no_list_unsubscribe_for_transactional() -> None:
    composed, msg = build()
    assert "List-Unsubscribe" not in msg
    assert "List-Unsubscribe-Post" not in msg
    assert b"unsubscribe" not in composed.data.lower()


def test_no_one_click_without_https_url() -> None:
    _, msg = build_env(make_envelope(bulk=True), make_settings(unsubscribe_base_url=None))
    assert re.fullmatch(r"<mailto:unsubscribe\+[\w.-]+@bounces\.example\.com>", msg["List-Unsubscribe"])
    assert "List-Unsubscribe-Post" not in msg
    _, msg = build_env(make_envelope(bulk=True), make_settings(unsubscribe_base_url="http://t.example.com"))
    assert msg["List-Unsubscribe"].startswith("<http://t.example.com/unsubscribe/")
    assert "List-Unsubscribe-Post" not in msg


def test_no_list_unsubscribe_when_nothing_to_offer() -> None:
    settings = make_settings(unsubscribe_base_url=None, unsubscribe_mailto=False)
    _, msg = build_env(make_envelope(bulk=True), settings)
    assert "List-Unsubscribe" not in msg


def test_no_internal_data_leaks_into_headers() -> None:
    composed, _ = build(
        bulk=True, campaign="secret-campaign", custom_id="cust-123", event_payload="payload-xyz"
    )
    head = header_block(composed.data)
    for leak in (b"secret-campaign", b"cust-123", b"payload-xyz", b"X-MJ", b"X-Mailstack"):
        assert leak not in head


@pytest.mark.parametrize("url", ["ftp://x.example", "https://t.example.com/a b", "https://t/<x>", "nope"])
def test_bad_unsubscribe_url_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="unsubscribe_base_url"):
        make_settings(unsubscribe_base_url=url)


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="hostname"):
        ComposeSettings("bad host", "b.example", TokenSigner(SECRET))
    with pytest.raises(ValueError, match="bounce_domain"):
        ComposeSettings("h.example", "[127.0.0.1]", TokenSigner(SECRET))
    with pytest.raises(TypeError):
        ComposeSettings("h.example", "b.example", SECRET)  # type: ignore[arg-type]
    assert "compose-test-secret" not in repr(make_settings())


# --- VERP --------------------------------------------------------------------------------------


@pytest.mark.parametrize("message_id", [0, 1, 35, 36, 1001, 2**40 + 7, 2**63 - 1])
def test_verp_round_trip(message_id: int) -> None:
    settings = make_settings()
    address = verp_address(message_id, settings)
    assert re.fullmatch(r"b-[0-9a-z]+-[a-z2-7]{16}@bounces\.example\.com", address)
    assert len(address.split("@")[0]) <= 64
    assert parse_verp(address, settings) == message_id
    assert parse_verp(address.upper(), settings) == message_id  # relays may change case
    assert parse_verp(f"<{address}>", settings) == message_id


def test_compose_uses_verp_return_path() -> None:
    settings = make_settings()
    composed = compose(make_envelope(message_id=31337), settings, now=NOW)
    assert composed.mail_from == verp_address(31337, settings)
    assert parse_verp(composed.mail_from, settings) == 31337
    assert b"Return-Path" not in composed.data  # added by the final MTA, not by us


def test_verp_forgeries_rejected() -> None:
    settings = make_settings()
    good = verp_address(1001, settings)
    local, _, domain = good.partition("@")
    _, id36, mac = local.split("-")
    other = verp_address(1002, settings).split("@")[0].split("-")[2]
    flipped = mac[:-1] + ("a" if mac[-1] != "a" else "b")
    foreign_key = replace(settings, tokens=TokenSigner(b"another-secret-0123456789abcdef"))
    forgeries = [
        f"b-{id36}-{other}@{domain}",  # MAC of another message
        f"b-{id36}-{flipped}@{domain}",
        f"b-{id36}-{mac}@evil.example.com",
        f"b-{id36}-{mac}@bounces.example.com.evil.example",
        f"b-0{id36}-{mac}@{domain}",  # non-canonical id
        f"b-{id36}-{mac[:-1]}@{domain}",
        f"x-{id36}-{mac}@{domain}",
        f"b-{id36}-{mac}",
        f"b--{mac}@{domain}",
        "postmaster@bounces.example.com",
        "",
        "@",
        "b-" + "z" * 14 + f"-{mac}@{domain}",
        "x" * 1000,
    ]
    for forged in forgeries:
        assert parse_verp(forged, settings) is None, forged
    assert parse_verp(good, foreign_key) is None
    assert parse_verp(None, settings) is None  # type: ignore[arg-type]


def test_verp_rejects_out_of_range_ids() -> None:
    settings = make_settings()
    for bad in (-1, 2**63, True):
        with pytest.raises(ValueError):
            verp_address(bad, settings)
    with pytest.raises(ComposeError, match="message_id"):
        compose(make_envelope(message_id=-5), settings, now=NOW)
