"""End to end: ``mailstack serve --smtp`` as a subprocess, smtplib as the application, a real relay."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import smtplib
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import dkim
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from serve_support import MAILSTACK, Instance
from smtp_helpers import TIMEOUT, client_context
from support import SmtpSink, free_port

from mailstack.smtp import SELF_SIGNED_FILE, ensure_self_signed

MESSAGE = (
    b"From: Example News <news@example.com>\r\n"
    b"To: Ana <ana@example.net>\r\n"
    b"Cc: bob@example.org\r\n"
    b"Bcc: hidden@example.org\r\n"
    b"Subject: Your order has shipped\r\n"
    b"Date: Sun, 01 Mar 2026 10:00:00 +0100\r\n"
    b"Message-ID: <order-42@shop.example.com>\r\n"
    b"X-Mailer: shop 1.0\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Ana, your order is on its way.\r\n"
)
RECIPIENTS = ("ana@example.net", "bob@example.org", "hidden@example.org")


def _dns(instance: Instance) -> Any:
    records = {r["dns_name"].encode() + b".": r["txt"].encode() for r in instance.credentials["dkim"]}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name if name.endswith(b".") else name + b".")

    return lookup


def _verified_selectors(data: bytes, instance: Instance) -> list[str]:
    """Verify every DKIM-Signature with dkimpy (an independent implementation); return the selectors."""
    selectors = []
    for index in range(len(email.message_from_bytes(data).get_all("DKIM-Signature") or [])):
        verifier = dkim.DKIM(data)
        assert verifier.verify(idx=index, dnsfunc=_dns(instance)), f"signature {index} does not verify"
        selectors.append(verifier.selector.decode())
    return selectors


def _status(instance: Instance, message_id: int, wanted: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    data: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{instance.url}/v3/REST/message/{message_id}", auth=instance.auth)
        assert response.status_code == 200, response.text
        data = response.json()["Data"][0]
        if data["Status"] == wanted:
            return data
        time.sleep(0.1)
    pytest.fail(f"message {message_id} is {data.get('Status')!r}, not {wanted!r}")


def _submit(port: int, cafile: Path, instance: Instance, recipients: tuple[str, ...]) -> list[int]:
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.starttls(context=client_context(cafile))  # the certificate is verified, hostname included
        client.login(*instance.auth)
        assert client.mail("news@example.com")[0] == 250
        for recipient in recipients:
            assert client.rcpt(recipient)[0] == 250
        code, reply = client.data(MESSAGE)
    assert code == 250, reply
    return [int(n) for n in re.findall(r"\d+", reply.decode().removeprefix("2.0.0"))]


def test_mail_submitted_over_smtp_arrives_signed_with_its_status_and_events(
    instance: Instance, smtp_sink: SmtpSink
) -> None:
    port = free_port()
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}", "--smtp", f"127.0.0.1:{port}")
    cafile = instance.data_dir / SELF_SIGNED_FILE  # generated at first start, private key inside
    assert stat.S_IMODE(cafile.stat().st_mode) & 0o077 == 0

    ids = dict(zip(RECIPIENTS, _submit(port, cafile, instance, RECIPIENTS), strict=True))
    for recipient, message_id in ids.items():
        status = _status(instance, message_id, "sent")
        assert status["Destination"] == recipient and status["Sender"] == "news@example.com"
        assert status["Subject"] == "Your order has shipped"
        assert status["MessageIDHeader"] == "<order-42@shop.example.com>"
        assert status["LastSMTPReply"].startswith("250 2.0.0 Ok: queued as")
    kinds = {r: _status(instance, i, "sent")["RecipientType"] for r, i in ids.items()}
    assert kinds == {"ana@example.net": "to", "bob@example.org": "cc", "hidden@example.org": "bcc"}

    received = {mail.rcpt_tos[0]: mail for mail in smtp_sink.wait_for(3)}
    assert set(received) == set(RECIPIENTS)
    for recipient, mail in received.items():
        assert mail.mail_from.startswith("b-") and mail.mail_from.endswith("@bounces.example.com")
        assert _verified_selectors(mail.data, instance) == [
            k["selector"] for k in instance.credentials["dkim"]
        ]
        assert b"hidden@example.org" not in mail.data  # Bcc stripped, also from the Bcc recipient's copy
        parsed = email.message_from_bytes(mail.data, policy=email.policy.default)
        # The client's headers are kept as they were: its Date, its Message-ID, its own fields.
        assert parsed["Date"] == "Sun, 01 Mar 2026 10:00:00 +0100"
        assert parsed["Message-ID"] == "<order-42@shop.example.com>"
        assert parsed["X-Mailer"] == "shop 1.0" and parsed["To"] == "Ana <ana@example.net>"
        assert mail.data.endswith(b"\r\n\r\nHello Ana, your order is on its way.\r\n"), recipient

    history = httpx.get(
        f"{instance.url}/v3/REST/messagehistory/{ids['ana@example.net']}", auth=instance.auth
    ).json()
    assert [e["EventType"] for e in history["Data"]] == ["queued", "sent"]
    assert instance.stop() == 0
    log = instance.log()
    for line in log.splitlines():
        json.loads(line)  # every log line is one JSON object (aiosmtpd's own lines included)
    auth_token = base64.b64encode(f"\0{instance.auth[0]}\0{instance.auth[1]}".encode()).decode()
    for private in (instance.auth[1], auth_token, *RECIPIENTS, "your order is on its way"):
        assert private not in log


def test_smtp_from_the_config_file_with_a_configured_certificate(
    instance: Instance, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    (tmp_path / "tls").mkdir()
    certificate = ensure_self_signed(tmp_path / "tls" / "mail.pem", "smtp.example.com")
    port = free_port()
    instance.set_config("smtp", "listen", f'"127.0.0.1:{port}"')
    instance.set_config("smtp", "tls_cert", f'"{certificate}"')
    instance.set_config("smtp", "tls_key", f'"{certificate}"')
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
        client.starttls(context=client_context(certificate))
        presented = client.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    expected = x509.load_pem_x509_certificate(certificate.read_bytes())
    assert presented == expected.public_bytes(Encoding.DER)
    assert not (instance.data_dir / SELF_SIGNED_FILE).exists()
    (message_id,) = _submit(port, certificate, instance, ("ana@example.net",))
    _status(instance, message_id, "sent")
    assert instance.stop() == 0


def test_serve_exits_non_zero_when_the_smtp_address_is_taken(instance: Instance) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                MAILSTACK,
                "serve",
                "--data-dir",
                str(instance.data_dir),
                "--http",
                f"127.0.0.1:{free_port()}",
                "--smtp",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            env=instance.env,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    output = result.stderr + result.stdout
    assert "a service cannot start" in output
    assert "smtp-submission" in output
