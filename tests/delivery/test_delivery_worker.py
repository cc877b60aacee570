"""The delivery worker against a real SMTP server: outcomes, events, retries, dead letters, no duplicates."""

from __future__ import annotations

from sqlalchemy import Engine, select
from support import SmtpSink, make_vault

from mailstack.delivery import DeliveryWorker, OutgoingMail, SmtpRelay, Undeliverable, WorkerSettings
from mailstack.model import Address, Envelope, MessageSpec
from mailstack.queue import queue_for
from mailstack.storage import (
    GLOBAL_SCOPE,
    PURPOSE_LAST_REPLY,
    create_api_key,
    find_api_key,
    insert_messages,
    list_events,
    schema,
    suppress,
)


def _prepare(envelope: Envelope) -> OutgoingMail:
    data = f"From: a@example.com\r\nTo: {envelope.recipient.email}\r\nSubject: t\r\n\r\nhello\r\n".encode()
    return OutgoingMail(
        envelope.message_id, f"b-{envelope.message_id}@bounces.example.com", envelope.recipient.email, data
    )


def _accept(engine: Engine, recipients: list[str], now: float = 1000.0) -> list[int]:
    spec = MessageSpec(
        sender=Address("a@example.com"), to=tuple(Address(r) for r in recipients), text="hello"
    )
    vault = make_vault(engine)
    with engine.begin() as conn:
        public, _ = create_api_key(conn)
        key = find_api_key(conn, public)
        assert key is not None
        accepted = insert_messages(conn, key.id, [spec], now=now, vault=vault)
        ids = [r.message_id for r in accepted[0]]
        queue_for(engine).enqueue(conn, ids, available_at=now)
    return ids


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _worker(engine: Engine, sink: SmtpSink, clock: Clock, **overrides: float) -> DeliveryWorker:
    settings = WorkerSettings(
        batch_size=10, lease_seconds=60, max_attempts=3, retry_base_seconds=10, **overrides
    )  # type: ignore[arg-type]
    relay = SmtpRelay(sink.host, sink.port, helo_name="test.example.com", pool_size=2, timeout=10)
    return DeliveryWorker(
        engine, queue_for(engine), _prepare, relay, settings, clock=clock, vault=make_vault(engine)
    )


def _status(engine: Engine, message_id: int) -> tuple[str, int, str | None]:
    vault = make_vault(engine)
    with engine.connect() as conn:
        row = conn.execute(
            select(schema.messages.c.status, schema.messages.c.attempts, schema.messages.c.last_reply).where(
                schema.messages.c.id == message_id
            )
        ).one()
        reply = vault.open_optional(conn, row.last_reply, purpose=PURPOSE_LAST_REPLY)
    return row.status, row.attempts, None if reply is None else reply.decode()


def test_sent_mail_reaches_the_relay_and_records_its_reply(engine: Engine, smtp_sink: SmtpSink) -> None:
    ids = _accept(engine, ["one@example.net", "two@example.net"])
    worker = _worker(engine, smtp_sink, Clock(1000.0))
    assert worker.run_once() == 2
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.received) == ["one@example.net", "two@example.net"]
    for message_id in ids:
        status, attempts, reply = _status(engine, message_id)
        assert (status, attempts) == ("sent", 1)
        assert reply is not None and reply.startswith("250 2.0.0 Ok: queued as Q")
        vault = make_vault(engine)
        with engine.connect() as conn:
            events = list_events(conn, message_id, vault=vault)
        assert [e[0] for e in events] == ["queued", "sent"]
        assert events[1][2]["smtp_reply"] == reply
    assert worker.run_once() == 0  # nothing left: each mail went out once


def test_temporary_failure_is_retried_with_backoff_then_dead_lettered(
    engine: Engine, smtp_sink: SmtpSink
) -> None:
    smtp_sink.replies["busy@example.net"] = "451 4.3.0 try again later"
    (message_id,) = _accept(engine, ["busy@example.net"])
    clock = Clock(1000.0)
    worker = _worker(engine, smtp_sink, clock)
    assert worker.run_once() == 1
    assert _status(engine, message_id)[:2] == ("deferred", 1)
    assert worker.run_once() == 0  # backoff: not due yet
    clock.now += 11.5
    assert worker.run_once() == 1
    assert _status(engine, message_id)[:2] == ("deferred", 2)
    clock.now += 23
    assert worker.run_once() == 1  # third attempt is the last (max_attempts=3)
    status, attempts, reply = _status(engine, message_id)
    assert (status, attempts) == ("failed", 3) and reply is not None and reply.startswith("451")
    clock.now += 10_000
    assert worker.run_once() == 0
    assert queue_for(engine).stats(now=clock.now).dead == 1
    vault = make_vault(engine)
    with engine.connect() as conn:
        kinds = [e[0] for e in list_events(conn, message_id, vault=vault)]
    assert kinds == ["queued", "deferred", "deferred", "failed"]
    assert smtp_sink.received == []


def test_permanent_refusal_fails_at_once(engine: Engine, smtp_sink: SmtpSink) -> None:
    smtp_sink.replies["nobody@example.net"] = "550 5.1.1 no such user"
    nobody, ok = _accept(engine, ["nobody@example.net", "ok@example.net"])
    worker = _worker(engine, smtp_sink, Clock(1000.0))
    assert worker.run_once() == 2
    assert _status(engine, nobody) == ("failed", 1, "550 5.1.1 no such user")
    assert _status(engine, ok)[0] == "sent"  # the refusal did not break the shared connection
    assert queue_for(engine).stats(now=1000.0).dead == 0


def test_relay_down_defers_instead_of_losing_mail(engine: Engine, smtp_sink: SmtpSink) -> None:
    (message_id,) = _accept(engine, ["x@example.net"])
    clock = Clock(1000.0)
    settings = WorkerSettings(batch_size=10, lease_seconds=60, max_attempts=3, retry_base_seconds=10)
    dead_relay = SmtpRelay("127.0.0.1", 1, helo_name="t", timeout=2)
    DeliveryWorker(
        engine, queue_for(engine), _prepare, dead_relay, settings, clock=clock, vault=make_vault(engine)
    ).run_once()
    assert _status(engine, message_id)[0] == "deferred"
    clock.now += 20
    assert _worker(engine, smtp_sink, clock).run_once() == 1
    assert _status(engine, message_id)[0] == "sent"


def test_a_message_recorded_as_sent_is_never_sent_again(engine: Engine, smtp_sink: SmtpSink) -> None:
    (message_id,) = _accept(engine, ["once@example.net"])
    clock = Clock(1000.0)
    worker = _worker(engine, smtp_sink, clock)
    queue = queue_for(engine)
    # A worker delivered and recorded the status, then crashed before removing its job.
    (lease,) = queue.lease(1, 60, now=1000.0)
    with engine.begin() as conn:
        conn.execute(schema.messages.update().where(schema.messages.c.id == message_id).values(status="sent"))
    clock.now += 61  # its lease expires
    assert worker.run_once() == 1
    assert smtp_sink.received == []
    assert queue.stats(now=clock.now).ready + queue.stats(now=clock.now).leased == 0
    assert lease.message_id == message_id


def test_mail_queued_before_a_suppression_is_blocked_not_sent(engine: Engine, smtp_sink: SmtpSink) -> None:
    gone, _kept = _accept(engine, ["gone@example.net", "kept@example.net"])
    vault = make_vault(engine)
    with engine.begin() as conn:
        suppress(
            conn,
            "Gone@example.net",
            scope=GLOBAL_SCOPE,
            reason="userunknown",
            source="hard_bounce",
            now=999.0,
            vault=vault,
        )
    assert _worker(engine, smtp_sink, Clock(1000.0)).run_once() == 2
    assert [m.rcpt_tos for m in smtp_sink.received] == [["kept@example.net"]]
    assert _status(engine, gone)[0] == "blocked"
    vault = make_vault(engine)
    with engine.connect() as conn:
        events = list_events(conn, gone, vault=vault)
    assert [e[0] for e in events] == ["queued", "blocked"]
    assert events[1][2]["mailjet"]["error"] == "preblocked"
    assert queue_for(engine).stats(now=1000.0).ready == 0


def test_an_undeliverable_message_fails_at_once_and_a_malfunction_is_retried(
    engine: Engine, smtp_sink: SmtpSink
) -> None:
    verdict, broken = _accept(engine, ["verdict@example.net", "broken@example.net"])

    def prepare(envelope: Envelope) -> OutgoingMail:
        if envelope.message_id == verdict:
            raise Undeliverable("template error in Html-part: unknown function")
        raise KeyError("a bug in preparing, not a verdict on the message")

    settings = WorkerSettings(batch_size=10, lease_seconds=60, max_attempts=3, retry_base_seconds=10)
    relay = SmtpRelay(smtp_sink.host, smtp_sink.port, helo_name="test.example.com", pool_size=1, timeout=10)
    clock = Clock(1000.0)
    worker = DeliveryWorker(
        engine, queue_for(engine), prepare, relay, settings, clock=clock, vault=make_vault(engine)
    )
    assert worker.run_once() == 2
    assert _status(engine, verdict)[:2] == ("failed", 1)
    # A malfunction keeps the message: deferred with a retry time, not failed.
    assert _status(engine, broken)[:2] == ("deferred", 1)
    clock.now += 11.5
    assert worker.run_once() == 1
    assert _status(engine, broken)[:2] == ("deferred", 2)
    assert smtp_sink.received == []
