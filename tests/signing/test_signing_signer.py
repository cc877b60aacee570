"""Signer behaviour, checked against dkimpy as an independent verifier."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailstack.signing import (
    DEFAULT_SIGNED_HEADERS,
    DkimKey,
    Signer,
    SigningError,
    generate_key,
    header_from_domain,
)
from mailstack.signing._canon import parse_headers, relaxed_body, relaxed_header, split_message

Verify = Callable[[bytes, Iterable[DkimKey]], list[str]]  # the dkimpy_verify fixture (conftest.py)
T0 = 1_700_000_000


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


HTML_BODY = "".join(
    f'<tr><td class="c{i}">Line {i} of the newsletter &mdash; caf\u00e9</td><td>{i * 7}</td></tr>\n'
    for i in range(60)
)

MESSAGES: dict[str, bytes] = {
    "simple": crlf(
        "From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: Hello\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\nMessage-ID: <1@example.com>\n\nHi Bob.\n"
    ),
    "folded-headers": crlf(
        "From: Alice\n  <alice@example.com>\n"
        "To: bob@example.org,\n\tcarol@example.org,\n   dave@example.org\n"
        "Subject: a rather long subject that\n\tcontinues on\n  a third line\n"
        'Content-Type: multipart/alternative;\n boundary="xyz"\n\n--xyz\nbody\n--xyz--\n'
    ),
    "repeated-headers": crlf(
        "Received: from a by b\nReceived: from c by d\nFrom: alice@example.com\nTo: one@example.org\n"
        "Cc: x@example.org\nTo: two@example.org\nCc: y@example.org\nSubject: repeated\n\nbody\n"
    ),
    "trailing-whitespace": crlf(
        "From: alice@example.com \t\nTo:   bob@example.org  \nSubject:\t spaced   out \t \n\n"
        "line with trailing spaces   \nline\twith\t\ttabs\t\n  leading and   inner   \n \t \nend\n"
    ),
    "empty-body": crlf("From: alice@example.com\nSubject: nothing\n\n"),
    "no-body-separator": crlf("From: alice@example.com\nSubject: nothing\n"),
    "trailing-blank-lines": crlf("From: alice@example.com\nSubject: blanks\n\nbody\n\n\n\n   \n\n"),
    "utf8-8bit": "From: Zo\u00eb <zoe@example.com>\r\nSubject: =?utf-8?q?caf=C3=A9?= \u00fcber\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    "Gr\u00fc\u00dfe aus K\u00f6ln \u2014 \u65e5\u672c\u8a9e\r\n\u00a0non-breaking\u00a0 \r\n".encode(),
    "dot-lines": crlf("From: alice@example.com\nSubject: dots\n\n.\n..\n.leading dot\n... more\n.\n"),
    "html-4k": crlf(
        "From: News <news@example.com>\nTo: reader@example.org\nSubject: Weekly\n"
        "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n"
        "List-Unsubscribe: <mailto:u@example.com>, <https://example.com/u/1>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\nFeedback-ID: 1:2:3:example\n\n"
        f"<html><body><table>\n{HTML_BODY}</table></body></html>\n"
    ),
}


def tags(header: bytes) -> dict[str, str]:
    """Parse one DKIM-Signature header field into its tags, whitespace removed."""
    value = header.decode("ascii").split(":", 1)[1]
    result = {}
    for item in value.split(";"):
        if item.strip():
            name, _, tag_value = item.partition("=")
            result[name.strip()] = re.sub(r"\s+", "", tag_value)
    return result


def split_signatures(signatures: bytes) -> list[bytes]:
    return [b"DKIM-Signature:" + s for s in signatures.split(b"DKIM-Signature:")[1:]]


# --- verification with dkimpy --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_signature_verifies_with_dkimpy(name: str, any_key: DkimKey, dkimpy_verify: Verify) -> None:
    signed = Signer([any_key]).sign_message(MESSAGES[name], timestamp=T0)
    assert dkimpy_verify(signed, [any_key]) == ["pass"]


def test_bare_lf_message_hashes_as_crlf(any_key: DkimKey, dkimpy_verify: Verify) -> None:
    crlf_message = MESSAGES["folded-headers"]
    lf_message = crlf_message.replace(b"\r\n", b"\n")
    signer = Signer([any_key])
    signatures = signer.sign(lf_message, timestamp=T0)
    # Both PKCS#1 v1.5 and Ed25519 signatures are deterministic.
    assert signatures == signer.sign(crlf_message, timestamp=T0)
    # The message itself is left as given; what travels over SMTP is its CRLF form.
    assert signer.sign_message(lf_message, timestamp=T0) == signatures + lf_message
    assert dkimpy_verify(signatures + crlf_message, [any_key]) == ["pass"]


def test_two_keys_give_two_signatures_sharing_one_body_hash(
    rsa_key: DkimKey, ed_key: DkimKey, dkimpy_verify: Verify
) -> None:
    signer = Signer([rsa_key, ed_key])
    signatures = signer.sign(MESSAGES["html-4k"], timestamp=T0)
    first, second = (tags(s) for s in split_signatures(signatures))
    assert (first["a"], first["s"]) == ("rsa-sha256", rsa_key.selector)
    assert (second["a"], second["s"]) == ("ed25519-sha256", ed_key.selector)
    assert first["bh"] == second["bh"]
    assert dkimpy_verify(signatures + MESSAGES["html-4k"], [rsa_key, ed_key]) == ["pass", "pass"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    subject=st.text(alphabet=st.sampled_from("ab \t.:;@"), max_size=30),
    folds=st.lists(st.text(alphabet=st.sampled_from("xy \t"), min_size=1, max_size=8), max_size=3),
    lines=st.lists(st.text(alphabet=st.sampled_from("ab. \t\u00e9"), max_size=12), max_size=8),
)
def test_random_messages_verify_with_dkimpy(
    subject: str, folds: list[str], lines: list[str], rsa_key: DkimKey, dkimpy_verify: Verify
) -> None:
    folded = "".join(f"\r\n {fold}" for fold in folds)
    body = "".join(f"{line}\r\n" for line in lines)
    message = f"From: a@example.com\r\nSubject: {subject}{folded}\r\n\r\n{body}".encode()
    assert dkimpy_verify(Signer([rsa_key]).sign_message(message, timestamp=T0), [rsa_key]) == ["pass"]


# --- tampering -------------------------------------------------------------------------------------


def test_tampered_body_fails(any_key: DkimKey, dkimpy_verify: Verify) -> None:
    signed = Signer([any_key]).sign_message(MESSAGES["simple"], timestamp=T0)
    [result] = dkimpy_verify(signed.replace(b"Hi Bob.", b"Hi Bob!"), [any_key])
    assert result.startswith("fail: body hash mismatch")


def test_tampered_subject_fails(any_key: DkimKey, dkimpy_verify: Verify) -> None:
    signed = Signer([any_key]).sign_message(MESSAGES["simple"], timestamp=T0)
    assert dkimpy_verify(signed.replace(b"Subject: Hello", b"Subject: Hallo"), [any_key]) == ["fail"]


def test_whitespace_changes_survive_relaxed_canonicalization(any_key: DkimKey, dkimpy_verify: Verify) -> None:
    signed = Signer([any_key]).sign_message(MESSAGES["simple"], timestamp=T0)
    reflowed = signed.replace(b"Subject: Hello", b"Subject:   Hello \t").replace(b"Hi Bob.", b"Hi  Bob.\t")
    assert dkimpy_verify(reflowed + b"\r\n\r\n", [any_key]) == ["pass"]


# dkimpy verifies as if From were always oversigned (its bug #644046 fix), so the "top" case is
# conclusive only with OpenDKIM, which test_signing_opendkim.py checks with and without oversigning.
@pytest.mark.parametrize("where", ["top", "bottom"])
def test_added_from_header_fails(where: str, any_key: DkimKey, dkimpy_verify: Verify) -> None:
    signatures = Signer([any_key]).sign(MESSAGES["simple"], timestamp=T0)
    extra = b"From: Mallory <mallory@example.net>\r\n"
    headers, body = MESSAGES["simple"].split(b"\r\n\r\n", 1)
    if where == "top":
        forged = signatures + extra + MESSAGES["simple"]
    else:
        forged = signatures + headers + b"\r\n" + extra + b"\r\n" + body
    assert dkimpy_verify(forged, [any_key]) == ["fail"]


def test_repeated_headers_are_signed_bottom_up(any_key: DkimKey, dkimpy_verify: Verify) -> None:
    message = MESSAGES["repeated-headers"]
    signatures = Signer([any_key]).sign(message, timestamp=T0)
    assert tags(signatures)["h"] == "from:from:to:to:cc:cc:subject"
    swapped = message.replace(b"To: one@example.org", b"To: tmp").replace(
        b"To: two@example.org", b"To: one@example.org"
    )
    swapped = swapped.replace(b"To: tmp", b"To: two@example.org")
    assert dkimpy_verify(signatures + message, [any_key]) == ["pass"]
    assert dkimpy_verify(signatures + swapped, [any_key]) == ["fail"]


# --- header field format ---------------------------------------------------------------------------


def test_signature_header_format(rsa_key: DkimKey) -> None:
    signatures = Signer([rsa_key]).sign(MESSAGES["html-4k"], timestamp=T0)
    assert signatures.startswith(b"DKIM-Signature: v=1; ")
    assert signatures.endswith(b"\r\n")
    lines = signatures[:-2].split(b"\r\n")
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(b" ") for line in lines[1:])
    assert b"\n" not in signatures.replace(b"\r\n", b"")
    parsed = tags(signatures)
    assert list(parsed) == ["v", "a", "c", "d", "s", "t", "h", "bh", "b"]
    assert parsed["v"] == "1"
    assert parsed["a"] == "rsa-sha256"
    assert parsed["c"] == "relaxed/relaxed"
    assert parsed["d"] == "example.com"
    assert parsed["s"] == rsa_key.selector
    assert parsed["t"] == str(T0)
    assert parsed["h"] == (
        "from:from:to:subject:mime-version:content-type:list-unsubscribe:list-unsubscribe-post:feedback-id"
    )
    assert len(base64.b64decode(parsed["b"])) == 256


def test_ed25519_signature_is_64_bytes(ed_key: DkimKey) -> None:
    parsed = tags(Signer([ed_key]).sign(MESSAGES["simple"], timestamp=T0))
    assert parsed["a"] == "ed25519-sha256"
    assert len(base64.b64decode(parsed["b"])) == 64


def test_default_timestamp_is_now(rsa_key: DkimKey) -> None:
    before = int(time.time())
    t = int(tags(Signer([rsa_key]).sign(MESSAGES["simple"]))["t"])
    assert before <= t <= int(time.time())


def test_expire_after_adds_x_tag(rsa_key: DkimKey, dkimpy_verify: Verify) -> None:
    now = int(time.time())
    signatures = Signer([rsa_key], expire_after=3600).sign(MESSAGES["simple"], timestamp=now)
    parsed = tags(signatures)
    assert list(parsed) == ["v", "a", "c", "d", "s", "t", "x", "h", "bh", "b"]
    assert int(parsed["x"]) == now + 3600
    assert dkimpy_verify(signatures + MESSAGES["simple"], [rsa_key]) == ["pass"]


def test_custom_signed_headers(rsa_key: DkimKey, dkimpy_verify: Verify) -> None:
    signer = Signer([rsa_key], signed_headers=["From", "Subject", "X-Custom"], oversigned=["from", "subject"])
    message = crlf("From: a@example.com\nX-Custom: 1\nTo: b@example.org\nX-Custom: 2\n\nbody\n")
    signatures = signer.sign(message, timestamp=T0)
    # Subject is absent but oversigned: listed once, so adding one later breaks the signature.
    assert tags(signatures)["h"] == "from:from:subject:x-custom:x-custom"
    assert dkimpy_verify(signatures + message, [rsa_key]) == ["pass"]
    added = message.replace(b"\r\n\r\n", b"\r\nSubject: later\r\n\r\n", 1)
    assert dkimpy_verify(signatures + added, [rsa_key]) == ["fail"]


def test_default_signed_headers() -> None:
    assert DEFAULT_SIGNED_HEADERS == (
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "content-type",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-id",
        "feedback-id",
    )


# --- signing domain --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "from_value",
    [
        "alice@example.com",
        "Alice@EXAMPLE.COM.",
        "Alice Smith <alice@Example.Com>",
        '"Smith, Alice" <alice@example.com>',
        '"alice@evil.test" <alice@example.com>',
        '"<bob@evil.test>, x" <alice@example.com>',
        '"quote \\" and @evil.test" <alice@example.com>',
        "=?utf-8?q?alice=40evil.test?= <alice@example.com>",
        "=?utf-8?Q?Alice@evil.test?= <alice@example.com>",
        "=?UTF-8?B?QWxpY2UgPGFsaWNlQGV2aWwudGVzdD4=?= <alice@example.com>",
        "alice@example.com (Alice, see bob@evil.test)",
        "(nested (comment@evil.test)) Alice <alice@example.com>",
        '"alice smith"@example.com',
        "Alice\r\n <alice@example.com>",
        "Zo\u00eb M\u00fcller <zoe@example.com>",
    ],
)
def test_signing_domain_comes_from_the_from_address(from_value: str, rsa_key: DkimKey) -> None:
    other = generate_key("evil.test", "s", "ed25519-sha256")
    signer = Signer([rsa_key, other])
    message = f"From: {from_value}\r\nSubject: x\r\n\r\nbody\r\n".encode()
    assert tags(signer.sign(message, timestamp=T0))["d"] == "example.com"
    assert header_from_domain(from_value.encode()) == "example.com"


def test_idn_domain_maps_to_a_label(ed_key: DkimKey, dkimpy_verify: Verify) -> None:
    assert header_from_domain("J\u00fcrgen <j@B\u00fccher.example>".encode()) == "xn--bcher-kva.example"
    key = DkimKey("xn--bcher-kva.example", "s1", "ed25519-sha256", ed_key.private_key)
    message = "From: j@b\u00fccher.example\r\n\r\nbody\r\n".encode()
    for domain in (None, "B\u00fccher.example."):
        signatures = Signer([key]).sign(message, domain=domain, timestamp=T0)
        assert tags(signatures)["d"] == "xn--bcher-kva.example"
        assert dkimpy_verify(signatures + message, [key]) == ["pass"]


@pytest.mark.parametrize(
    ("from_value", "error"),
    [
        ("alice@example.com, bob@example.com", "2 mailboxes"),
        ("Undisclosed", "no usable address"),
        ("<alice@>", "no usable address"),
        ('"unterminated <alice@example.com>', "unterminated"),
        ("a <b@example.com> <c@example.com>", "several"),
    ],
)
def test_unusable_from_header(from_value: str, error: str, rsa_key: DkimKey) -> None:
    message = f"From: {from_value}\r\n\r\nbody\r\n".encode()
    with pytest.raises(SigningError, match=error):
        Signer([rsa_key]).sign(message)


def test_no_key_for_domain(rsa_key: DkimKey) -> None:
    message = crlf("From: someone@other.example\n\nbody\n")
    with pytest.raises(SigningError, match=r"no DKIM key for domain 'other\.example'"):
        Signer([rsa_key]).sign(message)
    with pytest.raises(SigningError, match=r"no DKIM key for domain 'nope\.example'"):
        Signer([rsa_key]).sign(MESSAGES["simple"], domain="nope.example")


def test_explicit_domain_overrides_from(rsa_key: DkimKey, dkimpy_verify: Verify) -> None:
    signer = Signer([rsa_key])
    message = crlf("From: someone@other.example\n\nbody\n")
    signatures = signer.sign(message, domain="EXAMPLE.COM", timestamp=T0)
    assert tags(signatures)["d"] == "example.com"
    assert dkimpy_verify(signatures + message, [rsa_key]) == ["pass"]


def test_message_without_from_is_refused(rsa_key: DkimKey) -> None:
    with pytest.raises(SigningError, match="no From header"):
        Signer([rsa_key]).sign(crlf("To: a@example.com\n\nbody\n"), domain="example.com")


def test_two_from_headers_need_an_explicit_domain(rsa_key: DkimKey, dkimpy_verify: Verify) -> None:
    message = crlf("From: a@example.com\nFrom: b@evil.test\n\nbody\n")
    with pytest.raises(SigningError, match="2 From headers"):
        Signer([rsa_key]).sign(message)
    signatures = Signer([rsa_key]).sign(message, domain="example.com", timestamp=T0)
    assert tags(signatures)["h"] == "from:from:from"
    assert dkimpy_verify(signatures + message, [rsa_key]) == ["pass"]


# --- construction errors ---------------------------------------------------------------------------


def test_signer_rejects_bad_configuration(rsa_key: DkimKey) -> None:
    with pytest.raises(ValueError, match="must include 'from'"):
        Signer([rsa_key], signed_headers=["subject"], oversigned=())
    with pytest.raises(ValueError, match="invalid header name"):
        Signer([rsa_key], signed_headers=["from", "bad:name"])
    with pytest.raises(TypeError, match="single string"):
        Signer([rsa_key], signed_headers="from")
    with pytest.raises(ValueError, match="duplicate DKIM key for selector 'rsa2024'"):
        Signer([rsa_key, rsa_key])
    with pytest.raises(ValueError, match="expire_after"):
        Signer([rsa_key], expire_after=0)


def test_signer_keeps_its_keys(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    other = generate_key("Other.Example", "s1", "ed25519-sha256")
    signer = Signer(iter([rsa_key, ed_key, other]))
    assert signer.domains == frozenset({"example.com", "other.example"})


# --- canonicalization ------------------------------------------------------------------------------


def test_rfc6376_relaxed_example() -> None:
    # RFC 6376 §3.4.5.
    headers, body = split_message(b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n")
    canonical = b"".join(relaxed_header(name, value) for name, value in parse_headers(headers))
    assert canonical == b"a:X\r\nb:Y Z\r\n"
    assert relaxed_body(body) == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", b""),
        (b"\r\n", b""),
        (b"\r\n\r\n \t \r\n", b""),
        (b"a", b"a\r\n"),
        (b"a \t ", b"a\r\n"),
        (b"a\r\n\r\n", b"a\r\n"),
        (b"\r\na\r\n", b"\r\na\r\n"),
        (b"a\t\tb  c \r\n", b"a b c\r\n"),
        (b".\r\n..\r\n", b".\r\n..\r\n"),
        (b"a\r\r\n\r\n", b"a\r\r\n"),
    ],
)
def test_relaxed_body(body: bytes, expected: bytes) -> None:
    assert relaxed_body(body) == expected


def test_empty_body_hash(rsa_key: DkimKey) -> None:
    # The well-known relaxed body hash of an empty body: SHA-256 of the empty string.
    assert tags(Signer([rsa_key]).sign(MESSAGES["empty-body"]))["bh"] == base64.b64encode(
        hashlib.sha256(b"").digest()
    ).decode("ascii")


def test_oversigned_names_are_signed_even_if_not_listed(rsa_key: DkimKey, dkimpy_verify: Verify) -> None:
    signer = Signer([rsa_key], signed_headers=["from"], oversigned=["from", "reply-to"])
    signatures = signer.sign(MESSAGES["simple"], timestamp=T0)
    assert tags(signatures)["h"] == "from:from:reply-to"
    assert dkimpy_verify(signatures + MESSAGES["simple"], [rsa_key]) == ["pass"]


def test_one_signer_many_messages(rsa_key: DkimKey, ed_key: DkimKey, dkimpy_verify: Verify) -> None:
    # The signer caches header layouts per h= list and t= width; every combination must still verify.
    signer = Signer([rsa_key, ed_key], expire_after=2 * 10**9)
    for timestamp in (T0, 7, T0 + 1):
        for name in ("html-4k", "simple", "repeated-headers", "html-4k"):
            signatures = signer.sign(MESSAGES[name], timestamp=timestamp)
            first, second = (tags(s) for s in split_signatures(signatures))
            assert first["t"] == second["t"] == str(timestamp)
            assert first["x"] == str(timestamp + 2 * 10**9)
            assert dkimpy_verify(signatures + MESSAGES[name], [rsa_key, ed_key]) == ["pass", "pass"]


def test_negative_timestamp(rsa_key: DkimKey) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        Signer([rsa_key]).sign(MESSAGES["simple"], timestamp=-1)
