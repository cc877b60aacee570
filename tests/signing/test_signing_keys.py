"""DKIM key generation, PEM import/export and DNS records."""

from __future__ import annotations

import base64
import dataclasses
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mailstack.signing import DkimKey, generate_key, load_key

# A 512-bit RSA key (too small for DKIM since RFC 8301), in traditional PKCS#1 PEM.
RSA_512_PEM = b"""-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBAJzCXDwkQbRmxBj2+fY+s3GlP/W5xcTNZeyZd5HkZFWVtdHdQvmH
Dsd8qCOC7oLXAI3tAI65utUQjW3XSmrBP8UCAwEAAQJAUDGiK+ZEcrzL/xWCJLZI
6I+oW9YQ1bBaPyL3p3wW1Cz4obSu1VUkf3jfayxmTveaxjDdsATM6QfhcAOW2pJG
4QIhAMmfLN71OKx8IEYpCdFFxL2eHiYa3gaBsxAEPuW1q3PNAiEAxwmu6bORMH9p
AVlc0BfJhMuxt3eK4biGEdmeFTwDc9kCIHOigiahd86dJhl3IfVPUWX7EImEMUCE
FIGkHbq7NcklAiEAxXe57WqV1UPS7d+20U2IRRPCEX+sbh0gBn2c9PxBgKECIHYq
svGTtZ5o1UQwWMKbuUeQHSNuws8i+R8/hAjIsy6O
-----END RSA PRIVATE KEY-----
"""


def public_raw(key: DkimKey) -> bytes:
    return key.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_generate_rsa(rsa_key: DkimKey) -> None:
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    assert rsa_key.private_key.key_size == 2048
    assert rsa_key.private_key.private_numbers().public_numbers.e == 65537
    assert (rsa_key.domain, rsa_key.selector, rsa_key.algorithm) == ("example.com", "rsa2024", "rsa-sha256")


def test_generate_ed25519(ed_key: DkimKey) -> None:
    assert isinstance(ed_key.private_key, ed25519.Ed25519PrivateKey)
    assert ed_key.algorithm == "ed25519-sha256"


def test_generate_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unsupported DKIM algorithm 'rsa-sha1'"):
        generate_key("example.com", "s", "rsa-sha1")  # type: ignore[arg-type]


def test_key_is_frozen(ed_key: DkimKey) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ed_key.selector = "other"  # type: ignore[misc]


def test_domain_is_normalized(ed_key: DkimKey) -> None:
    key = DkimKey("Mail.Example.COM.", "Sel-1", "ed25519-sha256", ed_key.private_key)
    assert key.domain == "mail.example.com"
    assert key.dns_name() == "Sel-1._domainkey.mail.example.com"


@pytest.mark.parametrize(
    ("domain", "selector"), [("example.com", "bad;sel"), ("exa mple.com", "s"), ("", "s")]
)
def test_invalid_names(domain: str, selector: str, ed_key: DkimKey) -> None:
    with pytest.raises(ValueError, match="invalid DKIM"):
        DkimKey(domain, selector, "ed25519-sha256", ed_key.private_key)


def test_key_type_must_match_algorithm(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    with pytest.raises(ValueError, match="selector 's1': algorithm rsa-sha256 needs an RSA private key"):
        DkimKey("example.com", "s1", "rsa-sha256", ed_key.private_key)
    with pytest.raises(ValueError, match="selector 's2': algorithm ed25519-sha256 needs an Ed25519"):
        DkimKey("example.com", "s2", "ed25519-sha256", rsa_key.private_key)


def test_dns_name(rsa_key: DkimKey) -> None:
    assert rsa_key.dns_name() == "rsa2024._domainkey.example.com"


def test_dns_txt_rsa(rsa_key: DkimKey) -> None:
    txt = rsa_key.dns_txt()
    match = re.fullmatch(r"v=DKIM1; k=rsa; p=([A-Za-z0-9+/]+=*)", txt)
    assert match, txt
    der = base64.b64decode(match.group(1))
    assert der == public_raw(rsa_key)  # SubjectPublicKeyInfo, as RFC 6376 §3.6.1 asks
    loaded = serialization.load_der_public_key(der)
    assert isinstance(loaded, rsa.RSAPublicKey)
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    assert loaded.public_numbers() == rsa_key.private_key.public_key().public_numbers()


def test_dns_txt_ed25519(ed_key: DkimKey) -> None:
    txt = ed_key.dns_txt()
    match = re.fullmatch(r"v=DKIM1; k=ed25519; p=([A-Za-z0-9+/]+=*)", txt)
    assert match, txt
    raw = base64.b64decode(match.group(1))
    # RFC 8463 §4: the bare 32-byte public key, not a SubjectPublicKeyInfo.
    assert len(raw) == 32
    assert raw == ed_key.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


@pytest.mark.parametrize("which", ["rsa", "ed25519"])
def test_pem_round_trip(which: str, rsa_key: DkimKey, ed_key: DkimKey) -> None:
    key = rsa_key if which == "rsa" else ed_key
    pem = key.private_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    loaded = load_key(key.domain, key.selector, key.algorithm, pem)
    assert loaded.algorithm == key.algorithm
    assert public_raw(loaded) == public_raw(key)
    assert loaded.dns_txt() == key.dns_txt()


@pytest.mark.parametrize("which", ["rsa", "ed25519"])
def test_pem_round_trip_with_password(which: str, rsa_key: DkimKey, ed_key: DkimKey) -> None:
    key = rsa_key if which == "rsa" else ed_key
    pem = key.private_pem(password=b"s3cret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert b"PRIVATE KEY-----\n" in pem and pem != key.private_pem(password=b"s3cret")  # fresh salt
    loaded = load_key(key.domain, key.selector, key.algorithm, pem, password=b"s3cret")
    assert public_raw(loaded) == public_raw(key)

    with pytest.raises(ValueError, match=f"selector '{key.selector}'"):
        load_key(key.domain, key.selector, key.algorithm, pem)  # password missing
    with pytest.raises(ValueError, match=f"selector '{key.selector}'"):
        load_key(key.domain, key.selector, key.algorithm, pem, password=b"wrong")


def test_password_for_unencrypted_pem(ed_key: DkimKey) -> None:
    with pytest.raises(ValueError, match="selector 'ed2024'"):
        load_key("example.com", "ed2024", "ed25519-sha256", ed_key.private_pem(), password=b"x")


def test_load_traditional_rsa_pem(rsa_key: DkimKey) -> None:
    traditional = rsa_key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert traditional.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert public_raw(load_key("example.com", "t", "rsa-sha256", traditional)) == public_raw(rsa_key)


@pytest.mark.parametrize(
    "pem",
    [b"", b"not a pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_load_garbage(pem: bytes) -> None:
    with pytest.raises(
        ValueError, match=r"cannot load DKIM private key for selector 'mar2024' of 'example\.com'"
    ):
        load_key("example.com", "mar2024", "rsa-sha256", pem)


def test_load_wrong_algorithm(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    with pytest.raises(ValueError, match=r"selector 'x1'.*needs an Ed25519"):
        load_key("example.com", "x1", "ed25519-sha256", rsa_key.private_pem())
    with pytest.raises(ValueError, match=r"selector 'x2'.*needs an RSA"):
        load_key("example.com", "x2", "rsa-sha256", ed_key.private_pem())


def test_load_unsupported_key_type() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match=r"selector 'ec1'.*is not an RSA or Ed25519 key"):
        load_key("example.com", "ec1", "rsa-sha256", pem)


def test_load_unknown_algorithm(ed_key: DkimKey) -> None:
    with pytest.raises(ValueError, match="unsupported DKIM algorithm"):
        load_key("example.com", "s", "ed448-sha256", ed_key.private_pem())  # type: ignore[arg-type]


def test_rsa_key_below_1024_bits_is_refused() -> None:
    with pytest.raises(ValueError, match=r"selector 'old'.*512 bits"):
        load_key("example.com", "old", "rsa-sha256", RSA_512_PEM)
