"""One rule for sending domains: what `mailstack init` and `dkim` refuse, the Send API and SMTP refuse too,
in the same words; what init takes, the API sends from."""

from __future__ import annotations

import json
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from email_validator import SPECIAL_USE_DOMAIN_NAMES
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from serve_support import Instance, serve_env
from support import free_port

from mailstack.addresses import SPECIAL_USE_TLDS, SendingDomainError, sending_domain
from mailstack.api._sendv31 import MessageErrors, ParsedMessage, parse_send_request

MAILSTACK = str(Path(sys.executable).parent / "mailstack")

# The CLI is run for a few; the property tests below cover the family through the same function.
SPECIAL_USE = ["example.test", "Mail.Example.TEST.", "localhost", "router.home.arpa", "site.alt"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILSTACK, *args], capture_output=True, text=True, check=False)


def _error(result: subprocess.CompletedProcess[str]) -> str:
    """The CLI's error message, with the console's line wrapping undone."""
    said = " ".join(result.stderr.split())
    assert said.startswith("error: "), said
    return said.removeprefix("error: ")


def _refusal(domain: str) -> str:
    with pytest.raises(SendingDomainError) as refused:
        sending_domain(domain)
    return str(refused.value)


@pytest.mark.parametrize("domain", SPECIAL_USE)
def test_init_refuses_special_use_domains_and_creates_nothing(tmp_path: Path, domain: str) -> None:
    result = _run("init", "--data-dir", str(tmp_path / "data"), "--domain", domain, "--json")
    assert result.returncode == 2
    message = _error(result)
    assert "special-use domain name" in message and message == _refusal(domain)
    assert not (tmp_path / "data" / "mailstack.toml").exists()


def test_dkim_rotate_and_import_refuse_what_init_refuses(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    assert _run("init", "--data-dir", data_dir, "--domain", "example.com", "--json").returncode == 0
    rotated = _run("dkim", "rotate", "--data-dir", data_dir, "--domain", "example.test")
    assert rotated.returncode == 2 and _error(rotated) == _refusal("example.test")
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    common = ["--data-dir", data_dir, "--selector", "s1", "--algorithm", "ed25519-sha256"]
    imported = _run("dkim", "import", *common, "--domain", "site.alt", "--pem-file", str(pem))
    assert imported.returncode == 2 and _error(imported) == _refusal("site.alt")
    listed = json.loads(_run("dkim", "list", "--data-dir", data_dir, "--json").stdout)
    assert {k["domain"] for k in listed} == {"example.com"}


def test_the_api_and_smtp_refuse_a_special_use_sender_in_init_s_words(instance: Instance) -> None:
    refused = _run("init", "--data-dir", str(instance.data_dir.parent / "other"), "--domain", "example.test")
    said = _error(refused)
    smtp_port = free_port()
    instance.start("--smtp", f"127.0.0.1:{smtp_port}")
    message = {
        "From": {"Email": "hello@example.test"},
        "To": [{"Email": "ana@example.net"}],
        "Subject": "Hi",
        "TextPart": "Hello",
    }
    response = httpx.post(f"{instance.url}/v3.1/send", json={"Messages": [message]}, auth=instance.auth)
    assert response.status_code == 400
    (error,) = response.json()["Messages"][0]["Errors"]
    assert error["ErrorMessage"] == said and error["ErrorRelatedTo"] == ["From.Email"]

    tls = ssl.create_default_context(cafile=str(instance.data_dir / "smtp-tls.pem"))
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
        client.starttls(context=tls)
        client.login(*instance.auth)
        code, reply = client.mail("hello@example.test")
    assert code == 553 and reply.decode() == f"5.1.8 {said}"


def test_an_internationalised_domain_init_takes_sends_through_the_api(tmp_path: Path) -> None:
    # init stores the keys under the A-label form; the API's address holds U-labels: both are one domain.
    data_dir = tmp_path / "data"
    created = _run("init", "--data-dir", str(data_dir), "--domain", "BÜCHER.example", "--json")
    assert created.returncode == 0, created.stderr
    listed = json.loads(_run("dkim", "list", "--data-dir", str(data_dir), "--json").stdout)
    assert {k["domain"] for k in listed} == {"xn--bcher-kva.example"}
    instance = Instance(data_dir, json.loads(created.stdout), serve_env())
    try:
        instance.start()
        sent = instance.send(
            {"From": {"Email": "news@bücher.example"}, "To": [{"Email": "ana@example.net"}], "TextPart": "x"}
        )
        assert instance.wait_status(sent[0], "sent")["Status"] == "sent"
    finally:
        instance.kill()


# --- the family: any domain, as init takes it and as the API takes it in From ----------------------------

_LABEL_CHARS = "abcdefghijklmnopqrstuvwxyzABCZ0123456789-üéßж日"
_labels = st.text(_LABEL_CHARS, min_size=0, max_size=12)
_tlds = st.one_of(
    st.sampled_from([*SPECIAL_USE_TLDS, "com", "example", "de", "123", "TEST", "Local", "xn--p1ai", "рф"]),
    _labels,
)
_domains = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_labels, max_size=4), _tlds)


def test_the_rule_covers_every_name_the_address_library_refuses() -> None:
    assert set(SPECIAL_USE_DOMAIN_NAMES) <= set(SPECIAL_USE_TLDS)


@settings(max_examples=400, deadline=None)
@given(_domains)
def test_the_api_takes_a_from_domain_exactly_when_init_does(domain: str) -> None:
    # init also takes the absolute form "example.com." (the final dot dropped); an address has none.
    assume(not domain.endswith("."))
    message = {"From": {"Email": f"hello@{domain}"}, "To": [{"Email": "a@example.com"}], "TextPart": "x"}
    (result,) = parse_send_request({"Messages": [message]}).results
    try:
        expected = sending_domain(domain)
    except SendingDomainError as exc:
        assert isinstance(result, MessageErrors)
        from_errors = [e for e in result.errors if e.error_related_to == ("From.Email",)]
        assert from_errors, result
        if "special-use" in str(exc):
            assert [e.error_message for e in from_errors] == [str(exc)]
        return
    assert isinstance(result, ParsedMessage), result
    assert sending_domain(result.spec.sender.domain) == expected


@settings(max_examples=300, deadline=None)
@given(_domains, st.sampled_from(["", ".", " ", "\t"]))
def test_a_sending_domain_is_one_canonical_ascii_name(domain: str, suffix: str) -> None:
    try:
        canonical = sending_domain(domain + suffix)
    except SendingDomainError as exc:
        assert str(exc)
        return
    assert canonical.isascii() and canonical == canonical.lower() and len(canonical) <= 253
    assert sending_domain(canonical) == canonical
    assert canonical.rpartition(".")[2] not in SPECIAL_USE_TLDS
