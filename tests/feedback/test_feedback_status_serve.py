"""``mailstack serve`` following Postfix's log: statuses arrive through the API, a restart loses none."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from feedback_loop_helpers import (
    delivery,
    history,
    qmgr,
    removed,
    send,
    start_instance,
    status,
    suppressions,
    wait_for,
)
from support import SmtpSink

pytestmark = pytest.mark.e2e


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write(text)


def test_serve_records_postfix_statuses_and_resumes_after_a_restart(
    tmp_path: Path, db_url: str, smtp_sink: SmtpSink
) -> None:
    log = tmp_path / "postfix.log"
    log.touch()
    relay = ("--relay", f"{smtp_sink.host}:{smtp_sink.port}")
    instance = start_instance(
        tmp_path,
        db_url,
        ("feedback", "postfix_log", f'"{log}"'),
        ("feedback", "postfix_log_poll_seconds", "0.1"),
        args=relay,
    )
    try:
        good = send(instance, "ok@example.net")
        bad = send(instance, "nobody@example.net")
        wait_for(lambda: len(smtp_sink.received) == 2, "relay delivery")
        verp = {m.rcpt_tos[0]: m.mail_from for m in smtp_sink.received}
        for message_id in (good, bad):
            wait_for(lambda m=message_id: status(instance, m) == "sent", "relay acceptance")
        # What Postfix logs next: one delivery, and the other message's queue line only.
        _append(
            log,
            qmgr("4F1A2B3C4D", verp["ok@example.net"])
            + delivery("4F1A2B3C4D", "ok@example.net", "2.0.0", "sent", "250 2.0.0 OK 1732780800 accepted")
            + removed("4F1A2B3C4D")
            + qmgr("5A2B3C4D5E", verp["nobody@example.net"]),
        )
        wait_for(
            lambda: any(e["type"] == "delivered" for e in history(instance, good)), "the delivered event"
        )
        answer = httpx.get(f"{instance.url}/v3/REST/message/{good}", auth=instance.auth).json()["Data"][0]
        assert (answer["Status"], answer["LastSMTPReply"]) == ("sent", "250 2.0.0 OK 1732780800 accepted")
        assert instance.stop() == 0

        # Postfix goes on while mailstack is down.
        _append(
            log,
            delivery(
                "5A2B3C4D5E",
                "nobody@example.net",
                "5.1.1",
                "bounced",
                "host mx.example.net[192.0.2.1] said: 550 5.1.1 <nobody@example.net>: User unknown "
                "(in reply to RCPT TO command)",
            )
            + removed("5A2B3C4D5E"),
        )
        instance.start(*relay)
        wait_for(lambda: status(instance, bad) == "hardbounced", "the bounce read after the restart")
        bounce = [e for e in history(instance, bad) if e["type"] == "bounce"]
        assert len(bounce) == 1 and bounce[0]["source"] == "postfix-log"
        assert bounce[0]["mailjet"]["error"] == "user unknown"
        assert [e["Email"] for e in suppressions(instance)] == ["nobody@example.net"]
        assert [e["type"] for e in history(instance, good)] == ["queued", "sent", "delivered"]  # not twice
        assert instance.stop() == 0
    finally:
        instance.kill()
