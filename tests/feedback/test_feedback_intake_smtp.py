"""The bounce intake of ``mailstack serve``, over real SMTP: bounces, complaints, unsubscribes, refusals."""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from feedback_loop_helpers import (
    Instance,
    arf,
    dsn,
    history,
    plain_reply,
    send,
    smtp_send,
    start_instance,
    status,
    suppressions,
    wait_for,
)
from support import ReceivedMail, SmtpSink, free_port

pytestmark = pytest.mark.e2e

MAX_BYTES = 50_000


@pytest.fixture
def running(tmp_path: Path, db_url: str, smtp_sink: SmtpSink) -> Iterator[tuple[Instance, str]]:
    """``mailstack serve`` relaying to the sink, with its bounce intake on a free loopback port."""
    intake = f"127.0.0.1:{free_port()}"
    instance = start_instance(
        tmp_path,
        db_url,
        ("feedback", "intake", f'"{intake}"'),
        ("feedback", "intake_max_bytes", str(MAX_BYTES)),
        args=("--relay", f"{smtp_sink.host}:{smtp_sink.port}"),
    )
    try:
        yield instance, intake
        assert instance.stop() == 0
    finally:
        instance.kill()


def _delivered(sink: SmtpSink, recipient: str) -> ReceivedMail:
    """The copy the sink received for ``recipient`` (its MAIL FROM is the message's VERP address)."""

    def find() -> ReceivedMail | None:
        return next((m for m in sink.received if m.rcpt_tos == [recipient]), None)

    return wait_for(find, f"mail to {recipient}")


def _events(instance: Instance, message_id: int, kind: str) -> list[dict[str, object]]:
    return [e for e in history(instance, message_id) if e["type"] == kind]


def test_a_hard_bounce_suppresses_and_the_next_send_is_blocked_without_mail(
    running: tuple[Instance, str], smtp_sink: SmtpSink
) -> None:
    instance, intake = running
    message_id = send(instance, "ana@example.net")
    verp = _delivered(smtp_sink, "ana@example.net").mail_from
    wait_for(lambda: status(instance, message_id) == "sent", "relay acceptance")
    report = dsn(
        verp,
        "ana@example.net",
        status="5.1.1",
        diagnostic="550 5.1.1 <ana@example.net>: Recipient address rejected: User unknown in local table",
    )
    assert smtp_send(intake, "", [verp], report) == {}

    (bounce,) = _events(instance, message_id, "bounce")
    assert bounce["mailjet"] == {
        "event": "bounce",
        "blocked": True,
        "hard_bounce": True,
        "error_related_to": "recipient",
        "error": "user unknown",
        "comment": bounce["smtp_reply"],
    }
    assert bounce["reason"] == "userunknown" and bounce["source"] == "intake"
    assert status(instance, message_id) == "hardbounced"
    (entry,) = suppressions(instance)
    assert (entry["Email"], entry["Scope"], entry["Source"]) == ("ana@example.net", "global", "hard_bounce")
    assert entry["MessageID"] == message_id and entry["ExpiresAt"] is None

    # Postfix retrying the same bounce (a lost 250) changes nothing.
    assert smtp_send(intake, "", [verp], report) == {}
    assert len(_events(instance, message_id, "bounce")) == 1

    # The next send is answered as a success (Mailjet's preblocked mail), blocked, and never mailed.
    blocked_id = send(instance, "Ana@Example.NET")
    assert status(instance, blocked_id) == "blocked"
    (blocked,) = [e for e in history(instance, blocked_id)]
    assert blocked["type"] == "blocked"
    assert blocked["mailjet"] == {"event": "blocked", "error_related_to": "mailjet", "error": "preblocked"}
    # Mail sent after it arrives; by then the blocked one would have too (one queue, in order).
    send(instance, "bob@example.net")
    _delivered(smtp_sink, "bob@example.net")
    assert [m.rcpt_tos for m in smtp_sink.received].count(["Ana@Example.NET"]) == 0
    assert [m.rcpt_tos for m in smtp_sink.received].count(["ana@example.net"]) == 1


def test_only_our_feedback_addresses_are_accepted(running: tuple[Instance, str], smtp_sink: SmtpSink) -> None:
    instance, intake = running
    message_id = send(instance, "dora@example.net")
    verp = _delivered(smtp_sink, "dora@example.net").mail_from
    local, _, domain = verp.partition("@")
    forged_mac = local[:-1] + ("a" if local[-1] != "a" else "b")
    host, _, port = intake.partition(":")
    with smtplib.SMTP(host, int(port), timeout=30) as client:
        client.ehlo("mx.example.net")
        assert client.mail("")[0] == 250
        refused = [
            f"{forged_mac}@{domain}",  # a VERP address with a forged MAC
            f"b-1-aaaaaaaaaaaaaaaa@{domain}",
            f"{local}@example.org",  # a real VERP local part on another domain
            f"postmaster@{domain}",
            f"unsubscribe+bm90LmEudG9rZW4.AAAAAAAAAAAAAAAAAAAAAA@{domain}",
            "someone@example.net",  # never a relay
        ]
        for address in refused:
            code, _reply = client.rcpt(address)
            assert code == 550, address
        assert client.rcpt(verp)[0] == 250
        # More than intake_max_bytes: refused, nothing recorded.
        too_big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (MAX_BYTES // 1000 + 10)
        assert client.data(too_big)[0] == 552
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        smtp_send(
            intake,
            "",
            [f"{forged_mac}@{domain}"],
            dsn(verp, "dora@example.net", status="5.1.1", diagnostic="550 5.1.1 unknown"),
        )
    assert [e["type"] for e in history(instance, message_id)] == ["queued", "sent"]  # nothing recorded
    assert suppressions(instance) == []


def test_a_complaint_suppresses_at_once(running: tuple[Instance, str], smtp_sink: SmtpSink) -> None:
    instance, intake = running
    by_verp = send(instance, "erin@example.net")
    by_fbl = send(instance, "fred@example.net")
    verp_erin = _delivered(smtp_sink, "erin@example.net").mail_from
    verp_fred = _delivered(smtp_sink, "fred@example.net").mail_from
    # A report to the message's return path, and one to the feedback-loop address (found by its content).
    assert smtp_send(intake, "staff@hotmail.com", [verp_erin], arf(verp_erin, "erin@example.net")) == {}
    fbl = "fbl@bounces.example.com"
    report = arf(verp_fred, "fred@example.net", reporter="feedback@yahoo.com")
    assert smtp_send(intake, "feedback@yahoo.com", [fbl], report) == {}

    (spam,) = _events(instance, by_verp, "spam")
    assert spam["mailjet"] == {"event": "spam", "source": "JMRPP"}
    assert _events(instance, by_fbl, "spam")[0]["mailjet"] == {"event": "spam", "source": "Yahoo CFL"}
    assert status(instance, by_verp) == status(instance, by_fbl) == "spam"
    entries = {e["Email"]: e for e in suppressions(instance)}
    assert set(entries) == {"erin@example.net", "fred@example.net"}
    assert all(e["Source"] == "complaint" and e["Scope"] == "global" for e in entries.values())
    assert status(instance, send(instance, "erin@example.net")) == "blocked"


def test_soft_bounces_suppress_at_the_limit(running: tuple[Instance, str], smtp_sink: SmtpSink) -> None:
    instance, intake = running  # soft_bounce_limit = 3 within 7 days: the defaults
    ids = []
    for attempt in range(3):
        ids.append(send(instance, "gina@example.net", Subject=f"issue {attempt}"))
        wait_for(lambda n=attempt + 1: len(smtp_sink.received) >= n, "delivery")
    verps = [m.mail_from for m in smtp_sink.received]
    for count, verp in enumerate(verps, start=1):
        report = dsn(verp, "gina@example.net", status="5.2.2", diagnostic="552 5.2.2 Mailbox full")
        assert smtp_send(intake, "", [verp], report) == {}
        listed = suppressions(instance)
        assert len(listed) == (1 if count == 3 else 0), count
    bounces = [_events(instance, message_id, "bounce")[0] for message_id in ids]
    assert [b["mailjet"]["hard_bounce"] for b in bounces] == [False, False, False]
    assert [b["mailjet"]["blocked"] for b in bounces] == [False, False, True]
    assert bounces[0]["mailjet"]["error"] == "quota exceeded"
    (entry,) = suppressions(instance)
    assert entry["Source"] == "soft_bounce_limit" and entry["ExpiresAt"] is not None
    assert all(status(instance, message_id) == "softbounced" for message_id in ids)
    assert status(instance, send(instance, "gina@example.net")) == "blocked"


def test_a_mailto_unsubscribe_suppresses_for_the_sender_domain(
    running: tuple[Instance, str], smtp_sink: SmtpSink
) -> None:
    instance, intake = running
    message_id = send(instance, "hugo@example.net", CustomCampaign="newsletter")
    mail = _delivered(smtp_sink, "hugo@example.net")
    header = str(email.message_from_bytes(mail.data, policy=email.policy.default)["List-Unsubscribe"])
    mailto = re.search(r"<mailto:([^>]+)>", header)
    assert mailto is not None, header
    assert smtp_send(intake, "hugo@example.net", [mailto.group(1)], plain_reply(mailto.group(1))) == {}

    (unsub,) = _events(instance, message_id, "unsub")
    assert unsub["mailjet"]["event"] == "unsub" and unsub["method"] == "mailto"
    assert status(instance, message_id) == "unsub"
    (entry,) = suppressions(instance)
    assert (entry["Email"], entry["Scope"], entry["Source"]) == (
        "hugo@example.net",
        "example.com",
        "unsubscribe",
    )
    assert status(instance, send(instance, "hugo@example.net")) == "blocked"
