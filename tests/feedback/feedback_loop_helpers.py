"""Helpers of the feedback-loop tests: seeded messages, DSNs and ARF reports, ``mailstack serve`` runs."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from serve_support import Instance, initialise, serve_env
from sqlalchemy import Engine, select
from support import make_vault

from mailstack.compose import ComposeSettings
from mailstack.config import FeedbackSettings
from mailstack.model import Address, MessageSpec
from mailstack.storage import PURPOSE_LAST_REPLY, create_api_key, find_api_key, insert_messages, list_events
from mailstack.storage.schema import messages
from mailstack.tokens import TokenSigner

T = TypeVar("T")

COMPOSE = ComposeSettings(
    hostname="mail.example.com", bounce_domain="bounces.example.com", tokens=TokenSigner(b"k" * 32)
)
FEEDBACK = FeedbackSettings()


# --- Postfix log lines ----

_SECOND = iter(range(10**6))


def stamp() -> str:
    # Every line gets its own time, as real log lines do (two identical lines are one line to the reader).
    second = next(_SECOND)
    return f"Nov 28 {10 + second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"


def qmgr(qid: str, sender: str) -> str:
    return f"{stamp()} mail postfix/qmgr[101]: {qid}: from=<{sender}>, size=2048, nrcpt=1 (queue active)\n"


def delivery(qid: str, rcpt: str, dsn: str, status: str, text: str) -> str:
    return (
        f"{stamp()} mail postfix/smtp[202]: {qid}: to=<{rcpt}>, relay=mx.example.net[192.0.2.1]:25, "
        f"delay=0.41, delays=0.1/0.01/0.1/0.2, dsn={dsn}, status={status} ({text})\n"
    )


def removed(qid: str) -> str:
    return f"{stamp()} mail postfix/qmgr[101]: {qid}: removed\n"


# --- stored messages ----


def seed_messages(engine: Engine, recipients: list[str], sender: str = "news@example.com") -> list[int]:
    """One stored message per recipient, as the API would store them; returns their MessageIDs."""
    vault = make_vault(engine)
    with engine.begin() as conn:
        public_key, _secret = create_api_key(conn, "test")
        key = find_api_key(conn, public_key)
        assert key is not None
        spec = MessageSpec(
            sender=Address(sender), to=tuple(Address(r) for r in recipients), subject="hi", text="hello"
        )
        (accepted,) = insert_messages(conn, key.id, [spec], now=time.time(), vault=vault)
    return [r.message_id for r in accepted]


def message_events(engine: Engine, message_id: int) -> list[tuple[str, dict[str, Any]]]:
    """A message's events with their details opened (their personal part is sealed at rest)."""
    vault = make_vault(engine)
    with engine.connect() as conn:
        return [(kind, detail) for kind, _at, detail in list_events(conn, message_id, vault=vault)]


def message_status(engine: Engine, message_id: int) -> tuple[str, str | None]:
    vault = make_vault(engine)
    with engine.connect() as conn:
        row = conn.execute(
            select(messages.c.status, messages.c.last_reply).where(messages.c.id == message_id)
        ).one()
        reply = vault.open_optional(conn, row.last_reply, purpose=PURPOSE_LAST_REPLY)
    return row.status, None if reply is None else reply.decode()


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def dsn(
    verp: str,
    recipient: str,
    *,
    status: str,
    diagnostic: str,
    action: str = "failed",
    original: bytes = b"",
) -> bytes:
    """An RFC 3464 delivery status notification like Postfix's, sent to ``verp``."""
    boundary = "dsn-boundary"
    body = (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {verp}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        f"<{recipient}>: host mx.example.net[192.0.2.1] said: {diagnostic}\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Remote-MTA: dns; mx.example.net\r\nDiagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{verp}>\r\nTo: {recipient}\r\nSubject: hello\r\n\r\n"
        f"--{boundary}--\r\n"
    )
    return body.encode() + original


def arf(verp: str, recipient: str, *, reporter: str = "staff@hotmail.com") -> bytes:
    """An RFC 5965 abuse report about the message whose return path is ``verp``."""
    boundary = "arf-boundary"
    return (
        f"From: {reporter}\r\n"
        "To: fbl@bounces.example.com\r\n"
        "Subject: complaint about message from 203.0.113.9\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        "This is an email abuse report for an email message received from IP 203.0.113.9.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: Hotmail FBL\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{verp}>\r\nOriginal-Rcpt-To: <{recipient}>\r\n"
        "Source-IP: 203.0.113.9\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{verp}>\r\nFrom: news@example.com\r\nTo: {recipient}\r\nSubject: hello\r\n"
        "Message-ID: <x@mail.example.com>\r\n\r\nhello\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def plain_reply(to: str) -> bytes:
    message = EmailMessage()
    message["From"] = "someone@example.net"
    message["To"] = to
    message["Subject"] = "unsubscribe"
    message.set_content("please stop")
    return message.as_bytes()


def smtp_send(address: str, mail_from: str, rcpts: list[str], data: bytes) -> dict[str, tuple[int, bytes]]:
    host, _, port = address.rpartition(":")
    with smtplib.SMTP(host, int(port), timeout=30) as client:
        return client.sendmail(mail_from, rcpts, data)


def init_instance(tmp_path: Path, db_url: str, *settings: tuple[str, str, str]) -> Instance:
    """``mailstack init`` on the given database (PostgreSQL through MAILSTACK_DATABASE_URL), not started."""
    instance = initialise(tmp_path / "data", serve_env(db_url if db_url.startswith("postgresql") else None))
    for section, key, value in settings:
        instance.set_config(section, key, value)
    return instance


def start_instance(
    tmp_path: Path, db_url: str, *settings: tuple[str, str, str], args: tuple[str, ...] = ()
) -> Instance:
    """``mailstack init`` + ``serve``; see :func:`init_instance`."""
    instance = init_instance(tmp_path, db_url, *settings)
    instance.start(*args)
    return instance


def send(instance: Instance, to: str, **overrides: Any) -> int:
    """Send one message (``overrides`` its fields) to ``to``; returns its MessageID."""
    message: dict[str, Any] = {
        "From": {"Email": "news@example.com"},
        "To": [{"Email": to}],
        "Subject": "hello",
        "TextPart": "hello",
    }
    message.update(overrides)
    (message_id,) = instance.send(message)
    return int(message_id)


def history(instance: Instance, message_id: int) -> list[dict[str, Any]]:
    response = httpx.get(f"{instance.url}/v3/REST/messagehistory/{message_id}", auth=instance.auth)
    assert response.status_code == 200, response.text
    return [
        {"type": e["EventType"], **(json.loads(e["Comment"]) if e["Comment"] else {})}
        for e in response.json()["Data"]
    ]


def status(instance: Instance, message_id: int) -> str:
    return str(instance.status(message_id)["Status"])


def suppressions(instance: Instance, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{instance.url}/api/v1/suppressions", auth=instance.auth, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["Data"])
