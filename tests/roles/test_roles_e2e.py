"""End to end through the deployed stack: API (TLS) → mailstack → Postfix → a destination MX (smtp-sink),
the delivered message's DKIM signatures checked by two independent verifiers with the DNS records the
dkim_keys role wrote; bounces come back through the VERP domain to mailstack's bounce intake."""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import subprocess
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import dkim
import httpx
import pytest
from roles_support import (
    CONTROLLER_DIR,
    DATA_DIR,
    PROVIDED_DKIM,
    REFUSING_DOMAIN,
    SINK_DOMAIN,
    Deployment,
    Sink,
)

pytestmark = pytest.mark.timeout(1500)

POSTFIX_LOG = Path("/var/log/postfix.log")


def send(deployment: Deployment, recipient: str, subject: str) -> dict[str, object]:
    """One message through the Send API v3.1 on the TLS proxy (https://127.0.0.1)."""
    credentials = deployment.credentials
    body = {
        "Messages": [
            {
                "From": {"Email": "news@example.com", "Name": "Example News"},
                "To": [{"Email": recipient, "Name": "Reader"}],
                "Subject": subject,
                "TextPart": "Your order has shipped.",
                "HTMLPart": "<p>Your order has <b>shipped</b>.</p>",
            }
        ]
    }
    response = httpx.post(
        "https://127.0.0.1/v3.1/send",
        json=body,
        auth=(credentials["api_key"], credentials["api_secret"]),
        verify=False,  # the snakeoil certificate
        timeout=30,
    )
    assert response.status_code == 200, response.text
    message: dict[str, object] = response.json()["Messages"][0]["To"][0]
    return message


def as_received(dump: bytes) -> bytes:
    """The message as the MX received it: smtp-sink's own X-* lines and Received header removed, CRLF."""
    lines = dump.split(b"\n")
    index = 0
    while lines[index].startswith((b"X-Client-", b"X-Helo-Args:", b"X-Mail-Args:", b"X-Rcpt-Args:")):
        index += 1
    assert lines[index].startswith(b"Received: from ") and b"(smtp-sink)" in lines[index + 1], dump[:500]
    index += 1
    while lines[index].startswith((b" ", b"\t")):
        index += 1
    return b"\r\n".join(lines[index:])


def published_txt() -> dict[str, str]:
    """name -> TXT value of the records in the zone file the dkim_keys role wrote on the controller."""
    records = {}
    for line in (CONTROLLER_DIR / "dns-records.zone").read_text().splitlines():
        match = re.match(r"^(\S+)\.\s+\d+\s+IN\s+TXT\s+(.*)$", line)
        if match:
            records[match.group(1)] = "".join(re.findall(r'"([^"]*)"', match.group(2)))
    return records


def signatures(message: bytes) -> list[dict[str, str]]:
    fields = re.findall(rb"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", message, re.M)
    return [
        {
            tag.strip(): value.strip()
            for tag, _, value in (item.partition("=") for item in field.decode().split(";"))
        }
        for field in fields
    ]


def opendkim_verdicts(message: bytes, records: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """selector -> dkim= result, from OpenDKIM's own verifier (`opendkim -t`, no DNS: TestPublicKeys)."""
    opendkim = shutil.which("opendkim") or shutil.which("opendkim", path="/usr/sbin:/sbin")
    if opendkim is None:
        pytest.fail("opendkim is missing (apt-get install opendkim opendkim-tools)", False)
    keys = tmp_path / "keys"
    keys.write_text("".join(f"{name} {txt}\n" for name, txt in records.items() if "._domainkey." in name))
    conf = tmp_path / "opendkim.conf"
    conf.write_text(f"Mode v\nTestPublicKeys {keys}\nSyslog no\nMinimumKeyBits 1024\n")
    path = tmp_path / "received.eml"
    path.write_bytes(message)
    proc = subprocess.run(
        [opendkim, "-t", str(path), "-x", str(conf), "-vv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = re.search(r"hname='Authentication-Results' hvalue='(.*?)'$", proc.stdout, re.M | re.S)
    assert results, proc.stdout
    return {
        match.group(2): match.group(1)
        for match in re.finditer(r"dkim=(\w+).*?\bheader\.s=([\w-]+)", results.group(1), re.S)
    }


def wait_for_log(pattern: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, POSTFIX_LOG.read_text(errors="replace"), re.M)
        if found:
            return found.group(0)
        time.sleep(0.5)
    tail = "\n".join(POSTFIX_LOG.read_text(errors="replace").splitlines()[-30:])
    pytest.fail(f"nothing in {POSTFIX_LOG} matched {pattern!r} within {timeout}s; its end:\n{tail}", False)


def wait_for_event(
    deployment: Deployment, message_id: int, kind: str, timeout: float = 60
) -> dict[str, dict]:
    """The message's history (event type -> last event) once it has an event of ``kind``."""
    credentials = deployment.credentials
    deadline = time.monotonic() + timeout
    while True:
        history = httpx.get(
            f"https://127.0.0.1/v3/REST/messagehistory/{message_id}",
            auth=(credentials["api_key"], credentials["api_secret"]),
            verify=False,
            timeout=30,
        ).json()
        events = {event["EventType"]: event for event in history.get("Data", [])}
        if kind in events:
            return events
        if time.monotonic() > deadline:
            pytest.fail(f"message {message_id} has no {kind!r} event after {timeout}s: {history}", False)
        time.sleep(0.5)


def test_api_to_postfix_to_mx_with_valid_dkim(deployment: Deployment, sink: Sink, tmp_path: Path) -> None:
    marker = f"e2e-{uuid.uuid4().hex[:12]}"
    sent = send(deployment, f"reader@{SINK_DOMAIN}", f"Shipped {marker}")
    dump = sink.wait_for(marker.encode())
    message = as_received(dump)

    # It went through this host's Postfix, with mailstack's VERP return path.
    assert re.search(
        rb"^Received: from mail\.example\.com \(localhost \[127\.0\.0\.1\]\)\r\n"
        rb"\tby mail\.example\.com \(Postfix\)",
        message,
        re.M,
    )
    mail_from = re.search(rb"^X-Mail-Args: <([^>]+)>", dump, re.M)
    assert mail_from and re.fullmatch(rb"b-[0-9a-z]+-[a-z2-7]{16}@bounces\.example\.com", mail_from.group(1))

    # Two signatures (RSA-2048 and Ed25519), both verifying with the records the role published.
    records = published_txt()
    found = signatures(message)
    assert {s["a"] for s in found} == {"rsa-sha256", "ed25519-sha256"} and {s["d"] for s in found} == {
        "example.com"
    }
    # Signed with the keys the deployment provided (imported by the dkim_keys role: the newest active ones).
    assert {s["s"]: s["a"] for s in found} == PROVIDED_DKIM

    def dns(name: bytes, timeout: float = 5) -> bytes:
        return records.get(name.decode().rstrip("."), "").encode()

    verifier = dkim.DKIM(message)
    for index in range(len(found)):
        assert verifier.verify(idx=index, dnsfunc=dns), (
            f"dkimpy: signature {index} ({found[index]['a']}) fails"
        )
    verdicts = opendkim_verdicts(message, records, tmp_path)
    rsa_selector = next(s["s"] for s in found if s["a"] == "rsa-sha256")
    assert verdicts.get(rsa_selector) == "pass", verdicts

    # mailstack follows Postfix's log (the roles wire it up): the destination's acceptance is an event.
    events = wait_for_event(deployment, int(sent["MessageID"]), "delivered")
    assert "127.0.0.2[127.0.0.2]:2625" in events["delivered"]["Comment"]


def test_internal_headers_are_stripped_before_mail_leaves(sink: Sink) -> None:
    marker = f"strip-{uuid.uuid4().hex[:12]}"
    message = EmailMessage()
    message["From"] = "ops@example.com"
    message["To"] = f"reader@{SINK_DOMAIN}"
    message["Subject"] = marker
    message["X-Mailstack-Trace"] = "worker=3 queue=7"
    message["X-Originating-IP"] = "[10.1.2.3]"
    message.set_content("internal headers must not leave")
    with smtplib.SMTP("127.0.0.1", 25, timeout=30) as client:  # mynetworks: loopback may inject
        client.send_message(message)
    received = sink.wait_for(marker.encode())
    assert b"X-Mailstack-Trace" not in received and b"X-Originating-IP" not in received
    assert b"internal headers must not leave" in received


def test_bounces_come_back_through_the_verp_domain_to_the_intake(
    deployment: Deployment, refusing_sink: Sink
) -> None:
    """The destination refuses the recipient; Postfix's bounce goes to the VERP address, which the
    transport map routes to mailstack's bounce intake (127.0.0.1:2526)."""
    marker = f"bounce-{uuid.uuid4().hex[:12]}"
    recipient = f"gone-{marker}@{REFUSING_DOMAIN}"
    sent = send(deployment, recipient, f"Bounce {marker}")
    # postfix/smtp, or a sending IP's transport (postfix/other_ip127_0_0_2/smtp)
    refused = wait_for_log(
        rf"^.*postfix/(?:\w+/)?smtp\[\d+\]: (\w+): to=<{re.escape(recipient)}>.*status=bounced.*$"
    )
    queue_id = re.search(r": (\w+): to=", refused).group(1)  # type: ignore[union-attr]
    bounce_id = wait_for_log(
        rf"^.*postfix/bounce\[\d+\]: {queue_id}: sender non-delivery notification: (\w+)$"
    )
    notification = bounce_id.rsplit(" ", 1)[1]
    delivered = wait_for_log(
        rf"^.*: {notification}: to=<b-[0-9a-z]+-[a-z2-7]{{16}}@bounces\.example\.com>, "
        rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:2526,.*$"
    )
    assert "status=sent" in delivered or "status=bounced" in delivered, delivered
    wait_for_event(deployment, int(sent["MessageID"]), "bounce")


def test_secrets_never_reach_the_logs() -> None:
    secret = (DATA_DIR / "secret.key").read_text().strip()
    api_secret = json.loads((DATA_DIR / "api-credentials.json").read_text())["api_secret"]
    for log in (Path("/var/log/mailstack/mailstack.log"), POSTFIX_LOG):
        text = log.read_text(errors="replace")
        assert secret not in text and api_secret not in text, log
