"""Suppressed recipients through the feedback loop's way in and out: stored blocked, never delivered (the
list's own rules are tested with the storage, tests/storage/test_suppressions.py)."""

from __future__ import annotations

from feedback_loop_helpers import message_events, message_status, seed_messages
from sqlalchemy import Engine
from support import SmtpSink, make_vault

from mailstack.delivery import DeliveryWorker, OutgoingMail, SmtpRelay, WorkerSettings
from mailstack.model import Envelope, MessageStatus
from mailstack.queue import queue_for
from mailstack.storage import (
    suppress,
)

DAY = 86400.0


def _prepare(envelope: Envelope) -> OutgoingMail:
    data = f"From: news@example.com\r\nTo: {envelope.recipient.email}\r\n\r\nhello\r\n".encode()
    return OutgoingMail(envelope.message_id, "b@bounces.example.com", envelope.recipient.email, data)


def test_suppressed_recipients_are_stored_blocked_and_never_delivered(
    engine: Engine, smtp_sink: SmtpSink
) -> None:
    vault = make_vault(engine)
    with engine.begin() as conn:
        suppress(
            conn,
            "gone@example.net",
            scope="global",
            reason="550 5.1.1",
            source="hard_bounce",
            now=0,
            vault=vault,
        )
        suppress(
            conn, "quit@example.net", scope="example.com", reason="", source="unsubscribe", now=0, vault=vault
        )
        suppress(
            conn,
            "quit2@example.net",
            scope="other.example",
            reason="",
            source="unsubscribe",
            now=0,
            vault=vault,
        )
    gone, quit_, quit2, fine = seed_messages(
        engine, ["Gone@Example.net", "quit@example.net", "quit2@example.net", "fine@example.net"]
    )
    for message_id in (gone, quit_):
        assert message_status(engine, message_id)[0] == MessageStatus.BLOCKED
        ((kind, detail),) = message_events(engine, message_id)
        assert kind == "blocked"
        assert detail["mailjet"] == {"event": "blocked", "error_related_to": "mailjet", "error": "preblocked"}
    assert message_events(engine, gone)[0][1]["suppression"]["source"] == "hard_bounce"
    for message_id in (quit2, fine):
        assert message_status(engine, message_id)[0] == MessageStatus.QUEUED

    # Even queued by mistake (another way in that forgot the flag), a blocked message is never sent.
    queue = queue_for(engine)
    with engine.begin() as conn:
        queue.enqueue(conn, [gone, quit_, fine], available_at=0)
    relay = SmtpRelay(smtp_sink.host, smtp_sink.port, helo_name="test.example.com", pool_size=1, timeout=10)
    worker = DeliveryWorker(
        engine, queue, _prepare, relay, WorkerSettings(batch_size=10), vault=make_vault(engine)
    )
    try:
        assert worker.run_once() == 3
    finally:
        relay.close()
    assert [m.rcpt_tos for m in smtp_sink.received] == [["fine@example.net"]]
    assert message_status(engine, gone)[0] == MessageStatus.BLOCKED
    assert worker.run_once() == 0
