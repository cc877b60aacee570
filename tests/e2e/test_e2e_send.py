"""End to end: ``mailstack serve`` as a subprocess, a real SMTP relay, the Mailjet client."""

from __future__ import annotations

import email
import email.policy
import json
import signal
import stat
import subprocess
import time
from typing import Any

import dkim
import httpx
import pytest
from mailjet_rest import Client
from serve_support import MAILSTACK, Instance, initialise, serve_env
from support import SmtpSink


def _dns(instance: Instance) -> Any:
    records = {r["dns_name"].encode() + b".": r["txt"].encode() for r in instance.credentials["dkim"]}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name if name.endswith(b".") else name + b".")

    return lookup


def _verified_selectors(message: bytes, instance: Instance) -> list[str]:
    """Verify every DKIM-Signature with dkimpy (an independent implementation); return the selectors."""
    parsed = email.message_from_bytes(message)
    signatures = parsed.get_all("DKIM-Signature") or []
    selectors = []
    for index in range(len(signatures)):
        verifier = dkim.DKIM(message)
        assert verifier.verify(idx=index, dnsfunc=_dns(instance)), f"signature {index} does not verify"
        selectors.append(verifier.selector.decode())
    return selectors


def _client(instance: Instance) -> Client:
    return Client(auth=instance.auth, version="v3.1", api_url=f"{instance.url}/")


def _wait_status(instance: Instance, message_id: int, wanted: str, timeout: float = 30) -> dict[str, Any]:
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


def _message(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "From": {"Email": "news@example.com", "Name": "Exämple News"},
        "To": [{"Email": "ana@example.net", "Name": "Ana Núñez"}],
        "Subject": "Your order ✓",
        "TextPart": "Hello Ana, your order has shipped.",
        "HTMLPart": "<h1>Hello Ana</h1><p>Your order has shipped.</p>",
    }
    message.update(overrides)
    return message


def test_init_prints_the_contract_and_protects_its_secrets(instance: Instance) -> None:
    creds = instance.credentials
    assert set(creds) == {"config", "api_key", "api_secret", "dkim"}
    assert {k["algorithm"] for k in creds["dkim"]} == {"rsa-sha256", "ed25519-sha256"}
    for key in creds["dkim"]:
        assert key["dns_name"] == f"{key['selector']}._domainkey.example.com"
        assert key["txt"].startswith(
            "v=DKIM1; k=" + ("rsa" if key["algorithm"] == "rsa-sha256" else "ed25519")
        )
    for name in ("secret.key", "mailstack.db"):
        mode = stat.S_IMODE((instance.data_dir / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is readable by others: {oct(mode)}"
    assert creds["api_secret"] not in (instance.data_dir / "mailstack.db").read_bytes().decode("latin-1")
    again = subprocess.run(
        [MAILSTACK, "init", "--data-dir", str(instance.data_dir), "--domain", "example.com"],
        capture_output=True,
        text=True,
        env=instance.env,
        check=False,
    )
    assert again.returncode != 0 and "already exists" in again.stderr


def test_mailjet_client_sends_and_the_relay_gets_signed_well_formed_mail(
    instance: Instance, smtp_sink: SmtpSink
) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    result = _client(instance).send.create(
        data={
            "Messages": [
                _message(
                    Cc=[{"Email": "cc@example.org"}],
                    Bcc=[{"Email": "hidden@example.org"}],
                    CustomID="order-42",
                    CustomCampaign="autumn",
                )
            ]
        }
    )
    assert result.status_code == 200, result.text
    body = result.json()["Messages"][0]
    assert body["Status"] == "success" and body["CustomID"] == "order-42"
    recipients = {r["Email"]: r for part in ("To", "Cc", "Bcc") for r in body[part]}
    assert set(recipients) == {"ana@example.net", "cc@example.org", "hidden@example.org"}
    for recipient in recipients.values():
        assert recipient["MessageHref"] == f"{instance.url}/v3/REST/message/{recipient['MessageID']}"
        _wait_status(instance, recipient["MessageID"], "sent")

    received = {m.rcpt_tos[0]: m for m in smtp_sink.wait_for(3)}
    assert set(received) == set(recipients)
    message_ids = set()
    for address, mail in received.items():
        assert mail.mail_from.startswith("b-") and mail.mail_from.endswith("@bounces.example.com")
        assert _verified_selectors(mail.data, instance) == [
            k["selector"] for k in instance.credentials["dkim"]
        ]
        parsed = email.message_from_bytes(mail.data, policy=email.policy.default)
        assert str(parsed["Subject"]) == "Your order ✓"
        assert str(parsed["From"]) == "Exämple News <news@example.com>"
        assert "hidden@example.org" not in mail.data.decode("utf-8", "replace")  # Bcc never shows
        assert parsed["List-Unsubscribe"] is not None  # campaign mail
        assert parsed.get_body(("plain",)).get_content().strip() == "Hello Ana, your order has shipped."
        message_ids.add(parsed["Message-ID"])
        status = _wait_status(instance, recipients[address]["MessageID"], "sent")
        assert status["LastSMTPReply"].startswith("250 2.0.0 Ok: queued as")
    assert len(message_ids) == 3  # one Message-ID per recipient's copy

    history = httpx.get(
        f"{instance.url}/v3/REST/messagehistory/{recipients['ana@example.net']['MessageID']}",
        auth=instance.auth,
    ).json()
    assert [e["EventType"] for e in history["Data"]] == ["queued", "sent"]
    assert instance.stop() == 0
    log = instance.log()
    for line in log.splitlines():
        json.loads(line)  # every log line is one JSON object
    for private in (instance.auth[1], "ana@example.net", "hidden@example.org", "your order has shipped"):
        assert private not in log


def test_mailjet_client_gets_400_with_errors_for_an_invalid_from(
    instance: Instance, smtp_sink: SmtpSink
) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    client = _client(instance)
    try:
        result = client.send.create(data={"Messages": [_message(From={"Email": "not-an-address"})]})
        status, payload = result.status_code, result.json()
    except Exception as exc:  # mailjet_rest raises on 4xx (ValidationError) in recent versions
        status, payload = exc.status_code, json.loads(exc.response_body)  # type: ignore[attr-defined]
    assert status == 400
    (entry,) = payload["Messages"]
    assert entry["Status"] == "error"
    assert entry["Errors"][0]["ErrorRelatedTo"] == ["From.Email"]
    assert entry["Errors"][0]["ErrorCode"] == "mj-0013"
    time.sleep(0.5)
    assert smtp_sink.received == []


def test_a_mixed_batch_sends_the_valid_message_only(instance: Instance, smtp_sink: SmtpSink) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    response = httpx.post(
        f"{instance.url}/v3.1/send",
        auth=instance.auth,
        json={"Messages": [_message(), _message(Subject="bad\r\nBcc: victim@example.org")]},
    )
    assert response.status_code == 400
    ok, bad = response.json()["Messages"]
    assert ok["Status"] == "success" and bad["Status"] == "error"
    assert bad["Errors"][0]["ErrorRelatedTo"] == ["Subject"]
    (mail,) = smtp_sink.wait_for(1)
    time.sleep(0.5)
    assert len(smtp_sink.received) == 1 and b"victim@example.org" not in mail.data


def test_idempotency_key_returns_the_same_response_and_sends_once(
    instance: Instance, smtp_sink: SmtpSink
) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    payload = {"Messages": [_message()]}
    headers = {"Idempotency-Key": "order-42-confirmation"}
    first = httpx.post(f"{instance.url}/v3.1/send", auth=instance.auth, json=payload, headers=headers)
    second = httpx.post(f"{instance.url}/v3.1/send", auth=instance.auth, json=payload, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    other = httpx.post(
        f"{instance.url}/v3.1/send",
        auth=instance.auth,
        json={"Messages": [_message(Subject="x")]},
        headers=headers,
    )
    assert other.status_code == 422
    smtp_sink.wait_for(1)
    time.sleep(1)
    assert len(smtp_sink.received) == 1


@pytest.mark.parametrize(
    ("content", "auth_ok", "status"),
    [
        (b'{"Messages": [', True, 400),  # malformed JSON
        (b'{"Messages": []}', True, 400),
        (b"[]", True, 400),
        (b'{"Messages": [{"From": {"Email": "a@example.com"}}]}', True, 400),  # no To, no content
        (json.dumps({"Messages": [_message()]}).encode(), False, 401),
        (
            b'{"Messages": [{"From": {"Email": "a@example.com"}, "To": [{"Email": "b@example.net", '
            b'"Name": "x\\r\\nBcc: c@example.org"}], "TextPart": "x"}]}',
            True,
            400,
        ),  # CRLF in a name
        (json.dumps({"Messages": [_message(Headers={"X-Ok": "a\nBcc: c@example.org"})]}).encode(), True, 400),
        (
            json.dumps({"Messages": [_message(From={"Email": "someone@stranger.example"})]}).encode(),
            True,
            400,
        ),
    ],
)
def test_bad_input_gets_the_right_status_and_nothing_is_sent(
    instance: Instance, smtp_sink: SmtpSink, content: bytes, auth_ok: bool, status: int
) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    auth = instance.auth if auth_ok else (instance.auth[0], "wrong-secret")
    response = httpx.post(
        f"{instance.url}/v3.1/send", auth=auth, content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert "ErrorMessage" in json.dumps(body)
    time.sleep(0.5)
    assert smtp_sink.received == []
    outbox = httpx.get(f"{instance.url}/api/v1/outbox", auth=instance.auth).json()
    assert outbox["Count"] == 0


def test_oversized_body_is_refused(instance: Instance, smtp_sink: SmtpSink) -> None:
    instance.set_config("server", "max_body_bytes", "100000")
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    big = {"Messages": [_message(TextPart="x" * 200_000)]}
    response = httpx.post(f"{instance.url}/v3.1/send", auth=instance.auth, json=big)
    assert response.status_code == 413
    time.sleep(0.3)
    assert smtp_sink.received == []


def test_without_a_relay_mail_stays_in_the_sandbox_outbox(instance: Instance) -> None:
    instance.start()
    response = httpx.post(f"{instance.url}/v3.1/send", auth=instance.auth, json={"Messages": [_message()]})
    message_id = response.json()["Messages"][0]["To"][0]["MessageID"]
    _wait_status(instance, message_id, "sent")
    outbox = httpx.get(f"{instance.url}/api/v1/outbox", auth=instance.auth).json()
    assert [item["MessageID"] for item in outbox["Data"]] == [message_id]
    raw = httpx.get(outbox["Data"][0]["Href"], auth=instance.auth)
    assert raw.headers["content-type"] == "message/rfc822"
    assert _verified_selectors(raw.content, instance)
    listed = subprocess.run(
        [MAILSTACK, "outbox", "list", "--data-dir", str(instance.data_dir), "--json"],
        capture_output=True,
        text=True,
        env=instance.env,
        check=True,
    )
    assert json.loads(listed.stdout.splitlines()[0])["message_id"] == message_id


def test_sandbox_mode_validates_without_sending(instance: Instance, smtp_sink: SmtpSink) -> None:
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    response = httpx.post(
        f"{instance.url}/v3.1/send", auth=instance.auth, json={"SandboxMode": True, "Messages": [_message()]}
    )
    assert response.status_code == 200
    assert response.json()["Messages"][0]["To"][0]["MessageID"] == 0
    time.sleep(0.5)
    assert smtp_sink.received == []


def test_sigkill_mid_batch_loses_nothing(instance: Instance, smtp_sink: SmtpSink) -> None:
    instance.set_config("queue", "lease_seconds", "2")
    smtp_sink.delay = 0.05
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}", "--workers", "2")
    recipients = [f"user{i}@example.net" for i in range(60)]
    response = httpx.post(
        f"{instance.url}/v3.1/send",
        auth=instance.auth,
        json={
            "Messages": [_message(To=[{"Email": r}]) for r in recipients[:30]]
            + [_message(To=[{"Email": r}]) for r in recipients[30:]][:20]
        },
    )
    assert response.status_code == 200
    second = httpx.post(
        f"{instance.url}/v3.1/send",
        auth=instance.auth,
        json={"Messages": [_message(To=[{"Email": r}]) for r in recipients[50:]]},
    )
    assert second.status_code == 200
    smtp_sink.wait_for(5)
    instance.stop(signal.SIGKILL)
    delivered_before = len(smtp_sink.received)
    assert delivered_before < len(recipients), "the kill came too late to test anything"
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}", "--workers", "2")
    assert smtp_sink.wait_for_recipients(set(recipients)) == set(recipients)  # nothing lost
    # At least once: only mail in flight at the kill (at most two batches of 50) may arrive twice.
    assert len(smtp_sink.received) - len(recipients) <= 2 * 50
    assert instance.stop() == 0


def test_sigterm_drains_and_exits_zero(instance: Instance, smtp_sink: SmtpSink) -> None:
    smtp_sink.delay = 0.02
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}", "--workers", "1")
    recipients = [f"drain{i}@example.net" for i in range(20)]
    httpx.post(
        f"{instance.url}/v3.1/send",
        auth=instance.auth,
        json={"Messages": [_message(To=[{"Email": r}]) for r in recipients]},
    )
    smtp_sink.wait_for(1)
    assert instance.stop(signal.SIGTERM) == 0
    assert '"stopped"' in instance.log()
    count = len(smtp_sink.received)
    instance.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    assert smtp_sink.wait_for_recipients(set(recipients)) == set(recipients)
    time.sleep(0.5)
    assert len(smtp_sink.received) == len(recipients), "a graceful stop must not cause duplicates"
    assert count >= 1


def test_postgresql_backend_end_to_end(tmp_path: Any, pg_url: str, smtp_sink: SmtpSink) -> None:
    data_dir = tmp_path / "pg"
    inst = initialise(data_dir, serve_env(pg_url))
    assert not (data_dir / "mailstack.db").exists()
    inst.start("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    try:
        response = httpx.post(f"{inst.url}/v3.1/send", auth=inst.auth, json={"Messages": [_message()]})
        assert response.status_code == 200
        (mail,) = smtp_sink.wait_for(1)
        assert _verified_selectors(mail.data, inst)
        _wait_status(inst, response.json()["Messages"][0]["To"][0]["MessageID"], "sent")
        assert inst.stop() == 0
    finally:
        inst.kill()


def test_operations_endpoints(instance: Instance) -> None:
    instance.start()
    assert httpx.get(f"{instance.url}/healthz").json()["status"] == "ok"
    httpx.post(f"{instance.url}/v3.1/send", auth=instance.auth, json={"Messages": [_message()]})
    metrics = httpx.get(f"{instance.url}/metrics").text
    assert "mailstack_messages_accepted_total 1.0" in metrics
    assert "mailstack_queue_depth" in metrics
    spec = httpx.get(f"{instance.url}/openapi.json").json()
    assert "/v3.1/send" in spec["paths"]
    assert "Messages" in json.dumps(spec["paths"]["/v3.1/send"])
