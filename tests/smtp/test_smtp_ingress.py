"""The SMTP listener in-process: submission, authentication, authorisation, limits and smuggling."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import smtplib
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from smtp_helpers import TIMEOUT, SmtpStack, smtp_stack
from sqlalchemy import update

from mailstack.compose import parse_verp
from mailstack.smtp import _handler as smtp_handler
from mailstack.smtp import accept_submission, replies
from mailstack.storage import create_api_key, get_message, list_events, suppress
from mailstack.storage.schema import api_keys

SENDER = "news@example.com"
MESSAGE = (
    b"From: Example News <news@example.com>\r\n"
    b"To: Ana <ana@example.net>\r\n"
    b"Cc: bob@example.org\r\n"
    b"Bcc: hidden@example.org\r\n"
    b"Subject: Your order has shipped\r\n"
    b"X-Order: 42\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello Ana,\r\n"
    b".a line that starts with a dot\r\n"
    b"your order is on its way.\r\n"
)
BODY = MESSAGE.split(b"\r\n\r\n", 1)[1]


def message_ids(reply: bytes) -> list[int]:
    text = reply.decode()
    assert text.startswith("2.0.0 Ok: queued as MessageID"), text
    return [int(n) for n in re.findall(r"\d+", text.replace("2.0.0", ""))]


@pytest.fixture
def stack(tmp_path: Path, sqlite_url: str) -> SmtpStack:
    with smtp_stack(tmp_path, sqlite_url, {"mail": {"max_message_bytes": 4096, "max_recipients": 3}}) as s:
        yield s  # type: ignore[misc]


def test_submitted_mail_is_stored_before_the_reply_then_delivered_signed(tmp_path: Path, db_url: str) -> None:
    with smtp_stack(tmp_path, db_url) as stack, stack.connect() as client:
        assert client.mail(SENDER) == (250, b"2.1.0 Ok")
        for recipient in ("ana@example.net", "hidden@example.org", "bob@example.org"):
            assert client.rcpt(recipient) == (250, b"2.1.5 Ok")
        code, reply = client.data(MESSAGE)
        assert code == 250
        ana, hidden, bob = ids = message_ids(reply)  # in RCPT order
        # The 250 came after the commit: rows, events and queue jobs exist now, without waiting.
        with stack.runtime.engine.connect() as conn:
            records = {i: get_message(conn, i, 1, vault=stack.runtime.vault) for i in ids}
            assert all(
                [e[0] for e in list_events(conn, i, vault=stack.runtime.vault)] == ["queued"] for i in ids
            )
        kinds = {i: (r.recipient, r.kind, r.status, r.sender, r.subject) for i, r in records.items() if r}
        assert kinds == {
            ana: ("ana@example.net", "to", "queued", SENDER, "Your order has shipped"),
            hidden: ("hidden@example.org", "bcc", "queued", SENDER, "Your order has shipped"),
            bob: ("bob@example.org", "cc", "queued", SENDER, "Your order has shipped"),
        }

        assert stack.deliver() == 3
        message_id_headers = set()
        recipients = ("ana@example.net", "hidden@example.org", "bob@example.org")
        for message_id, recipient in zip(ids, recipients, strict=True):
            mail_from, rcpt_to, data = stack.outbox(message_id)
            assert rcpt_to == recipient
            assert parse_verp(mail_from, stack.runtime.compose_settings) == message_id
            assert len(stack.dkim_selectors(data)) == 2  # RSA and Ed25519, both verify
            assert b"hidden@example.org" not in data  # Bcc stripped from every copy
            parsed = email.message_from_bytes(data, policy=email.policy.default)
            assert parsed["X-Order"] == "42" and parsed["To"] == "Ana <ana@example.net>"
            assert parsed["Cc"] == "bob@example.org" and parsed["Date"] is not None
            assert data.endswith(b"\r\n\r\n" + BODY)  # the body exactly as submitted (dot unstuffed)
            message_id_headers.add(parsed["Message-ID"])
            with stack.runtime.engine.connect() as conn:
                record = get_message(conn, message_id, 1, vault=stack.runtime.vault)
                assert record is not None and record.status == "sent"
                assert record.message_id_header == parsed["Message-ID"]
                assert [e[0] for e in list_events(conn, message_id, vault=stack.runtime.vault)] == [
                    "queued",
                    "sent",
                ]
        assert len(message_id_headers) == 3  # no Message-ID submitted: one per copy, as API mail


def test_a_suppressed_recipient_is_stored_blocked_and_never_sent(stack: SmtpStack) -> None:
    with stack.runtime.engine.begin() as conn:
        suppress(
            conn,
            "gone@example.org",
            scope="global",
            reason="test",
            source="manual",
            now=time.time(),
            vault=stack.runtime.vault,
        )
    with stack.connect() as client:
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("ana@example.net")[0] == 250 and client.rcpt("gone@example.org")[0] == 250
        code, reply = client.data(MESSAGE)
    assert code == 250
    ana, gone = message_ids(reply)
    assert stack.deliver() == 1
    stack.outbox(ana)
    with stack.runtime.engine.connect() as conn:
        record = get_message(conn, gone, 1, vault=stack.runtime.vault)
        assert record is not None and record.status == "blocked"
        assert [e[0] for e in list_events(conn, gone, vault=stack.runtime.vault)] == ["blocked"]


def test_auth_is_offered_only_after_starttls(stack: SmtpStack) -> None:
    client = stack.connect(tls=False, login=False)
    assert not client.has_extn("auth") and client.has_extn("starttls")
    token = base64.b64encode(f"\0{stack.api_key}\0{stack.api_secret}".encode()).decode()
    assert client.docmd("AUTH", f"PLAIN {token}")[0] == 538
    client.starttls()
    client.ehlo("client.example.net")
    assert client.has_extn("auth") and set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
    client.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "starttls"])
def test_no_relaying_before_authentication(stack: SmtpStack, tls: bool) -> None:
    with stack.connect(tls=tls, login=False) as client:
        assert client.mail("news@example.com")[0] == 530
        assert client.mail("anyone@elsewhere.example")[0] == 530
        assert client.rcpt("victim@example.org")[0] == 530
        assert client.docmd("DATA")[0] == 530
    assert stack.message_count() == 0


def test_wrong_credentials_are_refused_and_repeated_attempts_disconnect(stack: SmtpStack) -> None:
    client = stack.connect(login=False)

    def plain(key: str, secret: str) -> int:
        return client.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{key}\0{secret}".encode()).decode())[0]

    assert plain(stack.api_key, "not-the-secret") == 535
    assert plain("unknown-key", stack.api_secret) == 535
    assert client.docmd("AUTH", "PLAIN !!notbase64")[0] == 501
    assert client.mail(SENDER)[0] == 530  # still not authenticated
    assert plain(stack.api_key, stack.api_secret) == 421  # the fourth AUTH closes the connection
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()


def test_auth_login_works_and_a_disabled_key_cannot_authenticate(stack: SmtpStack) -> None:
    with stack.connect(login=False) as client:
        client.user, client.password = stack.api_key, stack.api_secret
        assert client.auth("LOGIN", client.auth_login)[0] == 235
    with stack.runtime.engine.begin() as conn:
        other_key, other_secret = create_api_key(conn, "revoked")
        conn.execute(update(api_keys).where(api_keys.c.public_key == other_key).values(disabled=True))
    with stack.connect(login=False) as client, pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(other_key, other_secret)
    assert refused.value.smtp_code == 535


def test_a_key_without_the_send_scope_is_no_smtp_login(stack: SmtpStack) -> None:
    with stack.runtime.engine.begin() as conn:
        reader_key, reader_secret = create_api_key(conn, "stats only", ["read", "suppressions"])
    with stack.connect(login=False) as client, pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        client.login(reader_key, reader_secret)
    assert refused.value.smtp_code == 535
    assert stack.message_count() == 0


def test_only_domains_with_dkim_keys_may_send(stack: SmtpStack) -> None:
    with stack.connect() as client:
        code, reply = client.mail("news@elsewhere.example")
        assert code == 553 and reply.startswith(b"5.7.1") and b"elsewhere.example" in reply
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("ana@example.net")[0] == 250
        forged = MESSAGE.replace(
            b"From: Example News <news@example.com>", b"From: CEO <ceo@elsewhere.example>"
        )
        code, reply = client.data(forged)
        assert code == 550 and reply.startswith(b"5.7.1")
    assert stack.message_count() == 0


def test_oversized_messages_are_refused(stack: SmtpStack) -> None:
    with stack.connect() as client:
        assert client.esmtp_features["size"] == "4096"
        assert client.mail(SENDER, ["SIZE=5000"])[0] == 552
        assert client.mail(SENDER)[0] == 250 and client.rcpt("ana@example.net")[0] == 250
        big = MESSAGE + (b"x" * 70 + b"\r\n") * 70  # about 5 kB
        assert client.data(big)[0] == 552
        assert stack.message_count() == 0
        # The session goes on: a message within the limit is accepted.
        assert client.mail(SENDER)[0] == 250 and client.rcpt("ana@example.net")[0] == 250
        assert client.data(MESSAGE)[0] == 250
    assert stack.message_count() == 1


def test_recipients_are_validated_deduplicated_and_limited(stack: SmtpStack) -> None:
    with stack.connect() as client:
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt("not an address")[0] in (501, 553)
        assert client.rcpt("ana@")[0] == 553
        for recipient in ("ana@example.net", "bob@example.org", "ANA@example.net", "carl@example.org"):
            assert client.rcpt(recipient)[0] == 250
        code, reply = client.rcpt("dora@example.org")
        assert code == 452 and reply.startswith(b"4.5.3")
        code, reply = client.data(MESSAGE)
        assert code == 250 and len(message_ids(reply)) == 3  # ana once, bob, carl
    assert stack.message_count() == 3


def test_malformed_messages_are_refused_and_the_session_goes_on(stack: SmtpStack) -> None:
    with stack.connect() as client:
        for bad in (
            MESSAGE.replace(b"X-Order: 42\r\n", b"X-Order 42\r\n"),  # not a header field
            MESSAGE.replace(b"X-Order: 42\r\n", b"From: ceo@example.com\r\n"),  # two From fields
            MESSAGE.replace(b"X-Order: 42\r\n", b"Subject: other\r\n"),  # two Subject fields
        ):
            assert client.mail(SENDER)[0] == 250 and client.rcpt("ana@example.net")[0] == 250
            code, reply = client.data(bad)
            assert code == 550 and reply.startswith(b"5.6.0"), reply
        assert stack.message_count() == 0
        assert client.mail(SENDER)[0] == 250 and client.rcpt("ana@example.net")[0] == 250
        assert client.data(MESSAGE)[0] == 250


SMUGGLED = (
    b"MAIL FROM:<ceo@example.com>\r\n"
    b"RCPT TO:<victim@example.org>\r\n"
    b"DATA\r\n"
    b"From: ceo@example.com\r\nTo: victim@example.org\r\nSubject: smuggled\r\n\r\nPay now.\r\n"
)
# End-of-data look-alikes that some servers honour (SMTP smuggling, CVE-2023-51764/51765/51766), each
# followed by a smuggled transaction; then the real end of data, and (last case) a pipelined one.
SMUGGLING = {
    "LF.LF": b"Hello\n.\n" + SMUGGLED + b".\r\n",
    "LF.CRLF": b"Hello\n.\r\n" + SMUGGLED + b".\r\n",
    "CRLF.LF": b"Hello\r\n.\n" + SMUGGLED + b".\r\n",
    "CR.CRLF": b"Hello\r.\r\n" + SMUGGLED + b".\r\n",
    "CRLF.CR": b"Hello\r\n.\r" + SMUGGLED + b".\r\n",
    "CR.CR": b"Hello\r.\r" + SMUGGLED + b".\r\n",
    "bare LF then pipelined": b"Hello\nworld\r\n.\r\n" + SMUGGLED + b".\r\n",
}


@pytest.mark.parametrize("payload", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smtp_smuggling_is_refused_and_the_connection_closed(stack: SmtpStack, payload: bytes) -> None:
    session = stack.raw()
    try:
        header = b"From: news@example.com\r\nTo: ana@example.net\r\nSubject: hi\r\n\r\n"
        session.send(b"MAIL FROM:<news@example.com>\r\nRCPT TO:<ana@example.net>\r\nDATA\r\n")
        assert [session.reply()[0] for _ in range(3)] == [250, 250, 354]
        session.send(header + payload)
        code, text = session.reply()
        assert code == 550 and text.startswith("5.5.2"), text
        # Nothing the client wrote after the refused data is ever answered: the server hung up.
        assert session.replies_until_closed() == []
    finally:
        session.close()
    assert stack.message_count() == 0


def test_stop_closes_sessions_and_the_listener(stack: SmtpStack) -> None:
    client = stack.connect()
    stack.ingress.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", stack.ingress.port), timeout=TIMEOUT).close()


def test_stop_lets_a_message_being_stored_commit_and_get_its_250(
    stack: SmtpStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_accept(*args: Any) -> list[int]:
        entered.set()
        assert release.wait(TIMEOUT)
        return accept_submission(*args)

    monkeypatch.setattr(smtp_handler, "accept_submission", slow_accept)
    client = stack.connect()
    assert client.mail(SENDER)[0] == 250 and client.rcpt("ana@example.net")[0] == 250
    outcome: list[tuple[int, bytes]] = []
    sender = threading.Thread(target=lambda: outcome.append(client.data(MESSAGE)))
    sender.start()
    assert entered.wait(TIMEOUT)
    stopper = threading.Thread(target=stack.ingress.stop)
    stopper.start()
    # Wait until the listener is closed: the shutdown has begun while the message is being stored.
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", stack.ingress.port), timeout=TIMEOUT).close()
        except ConnectionRefusedError:
            break
        except ConnectionResetError:
            pass  # accepted by a listener being closed, then dropped: ask again until it refuses
        time.sleep(0.02)
    else:
        pytest.fail("the listener did not close")
    release.set()
    sender.join(TIMEOUT)
    stopper.join(TIMEOUT)
    assert not stopper.is_alive()
    ((code, reply),) = outcome
    assert code == 250 and stack.message_count() == 1
    assert len(message_ids(reply)) == 1
    client.close()


def test_long_accept_replies_span_several_lines() -> None:
    ids = list(range(10**15, 10**15 + 50))
    reply = replies.accepted(ids)
    lines = reply.split("\r\n")
    assert len(lines) > 1 and all(len(line) + 2 <= 512 for line in lines)
    assert all(line.startswith("250-") for line in lines[:-1]) and lines[-1].startswith("250 ")
    assert [int(n) for n in re.findall(r"\d{16}", reply)] == ids
