"""Tests for mailstack.tokens: signing, verification, purpose binding and tamper resistance."""

from __future__ import annotations

import base64
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailstack import tokens as tokens_module
from mailstack.tokens import MAC_SIZE, InvalidToken, TokenSigner

SECRET = b"token-test-secret-0123456789abcdef"
URL_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner(SECRET)


def test_round_trip_int_and_str(signer: TokenSigner) -> None:
    assert signer.verify("unsubscribe", signer.sign("unsubscribe", 123456789)) == "123456789"
    assert signer.verify("confirm", signer.sign("confirm", "user@example.com")) == "user@example.com"
    assert signer.verify("x", signer.sign("x", "")) == ""


def test_token_is_url_safe_without_padding(signer: TokenSigner) -> None:
    for payload in (0, 1, 2**63 - 1, "a", "ab", "abc", "héllo wörld/?&=+"):
        token = signer.sign("p", payload)
        assert URL_SAFE.fullmatch(token), token
        assert "=" not in token
        assert token.count(".") == 1


def test_mac_is_16_bytes_hmac_sha256(signer: TokenSigner) -> None:
    mac = signer.mac("p", 42)
    assert len(mac) == MAC_SIZE == 16
    token = signer.sign("p", 42)
    assert base64.urlsafe_b64decode(token.split(".")[1] + "==") == mac


def test_deterministic(signer: TokenSigner) -> None:
    assert signer.sign("p", 7) == signer.sign("p", 7) == TokenSigner(SECRET).sign("p", 7)
    assert signer.sign("p", 7) == signer.sign("p", "7")  # ints are signed as their decimal text


def test_purpose_is_bound(signer: TokenSigner) -> None:
    token = signer.sign("unsubscribe", 42)
    with pytest.raises(InvalidToken):
        signer.verify("verp", token)
    with pytest.raises(InvalidToken):
        signer.verify("unsubscribe2", token)
    assert signer.mac("a", "b") != signer.mac("ab", "")  # no ambiguity between purpose and payload


def test_other_secret_rejected(signer: TokenSigner) -> None:
    token = signer.sign("p", 42)
    with pytest.raises(InvalidToken):
        TokenSigner(b"another-secret-0123456789abcdef").verify("p", token)


def test_tampered_payload_rejected(signer: TokenSigner) -> None:
    token = signer.sign("p", 42)
    mac = token.split(".")[1]
    forged = base64.urlsafe_b64encode(b"43").rstrip(b"=").decode() + "." + mac
    with pytest.raises(InvalidToken):
        signer.verify("p", forged)


def test_tampered_mac_rejected(signer: TokenSigner) -> None:
    token = signer.sign("p", 42)
    last = token[-1]
    flipped = token[:-1] + ("A" if last != "A" else "B")
    with pytest.raises(InvalidToken):
        signer.verify("p", flipped)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "abc",
        "NDI",
        "NDI.",
        "NDI.short",
        "NDI.AAAAAAAAAAAAAAAAAAAAAAA",  # 23 characters
        "ND I.AAAAAAAAAAAAAAAAAAAAAA",
        "NDI=.AAAAAAAAAAAAAAAAAAAAAA",
        "N.AAAAAAAAAAAAAAAAAAAAAA",  # impossible base64 length
        "NDI.AAAAAAAAAAAAAAAAAAAAAA.x",
        "A" * 5000 + ".AAAAAAAAAAAAAAAAAAAAAA",
        "NDI\n.AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_rejected(signer: TokenSigner, bad: str) -> None:
    with pytest.raises(InvalidToken):
        signer.verify("p", bad)


def test_non_canonical_payload_encoding_rejected(signer: TokenSigner) -> None:
    token = signer.sign("p", "A")  # "QQ": the last character carries 4 unused bits
    payload, mac = token.split(".")
    assert payload == "QQ"
    with pytest.raises(InvalidToken):
        signer.verify("p", "QR." + mac)  # decodes to the same byte, but is not our token


def test_invalid_utf8_payload_rejected(signer: TokenSigner) -> None:
    encoded = base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        signer.verify("p", encoded + ".AAAAAAAAAAAAAAAAAAAAAA")


def test_non_str_token_rejected(signer: TokenSigner) -> None:
    with pytest.raises(InvalidToken):
        signer.verify("p", b"NDI.AAAAAAAAAAAAAAAAAAAAAA")  # type: ignore[arg-type]


def test_uses_constant_time_compare(signer: TokenSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module object mailstack.tokens uses
    signer.verify("p", signer.sign("p", 1))
    assert len(calls) == 1


def test_secret_and_argument_validation() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        TokenSigner(b"short")
    with pytest.raises(TypeError):
        TokenSigner("not-bytes-but-long-enough")  # type: ignore[arg-type]
    signer = TokenSigner(SECRET)
    with pytest.raises(ValueError, match="purpose"):
        signer.sign("", 1)
    with pytest.raises(ValueError, match="purpose"):
        signer.sign("a\x00b", 1)
    with pytest.raises(TypeError):
        signer.sign("p", True)
    with pytest.raises(TypeError):
        signer.sign("p", 1.5)  # type: ignore[arg-type]


def test_repr_does_not_leak_secret(signer: TokenSigner) -> None:
    assert SECRET.decode() not in repr(signer)
    assert "secret" in repr(signer)


def test_all_is_explicit() -> None:
    assert set(tokens_module.__all__) == {"MAC_SIZE", "InvalidToken", "TokenSigner"}


@given(purpose=st.text(min_size=1).filter(lambda p: "\x00" not in p), payload=st.text())
def test_property_round_trip(purpose: str, payload: str) -> None:
    signer = TokenSigner(SECRET)
    token = signer.sign(purpose, payload)
    assert URL_SAFE.fullmatch(token)
    assert signer.verify(purpose, token) == payload
    with pytest.raises(InvalidToken):
        signer.verify(purpose + "x", token)
