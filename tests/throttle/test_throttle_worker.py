"""The delivery worker with a throttle, on both backends, against a real SMTP server and a controlled
clock: limited mail waits for its slots, other mail is not held behind it, no attempt is counted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, select
from support import SmtpSink, free_port, make_vault

from mailstack.delivery import DeliveryWorker, OutgoingMail, SmtpRelay, WorkerSettings
from mailstack.model import Address, Envelope, MessageSpec
from mailstack.providers import ProviderClassifier
from mailstack.queue import queue_for
from mailstack.storage import create_api_key, find_api_key, insert_messages, list_events, schema
from mailstack.throttle import (
    Limit,
    Policy,
    SendingIp,
    Throttle,
    WarmupSchedule,
    throttle_store_for,
)

DAY = 86400.0
NOON = 20000 * DAY + DAY / 2  # 2024-10-04 12:00 UTC


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _prepare(envelope: Envelope) -> OutgoingMail:
    data = f"From: a@example.com\r\nTo: {envelope.recipient.email}\r\nSubject: t\r\n\r\nhi\r\n".encode()
    return OutgoingMail(envelope.message_id, "b@bounces.example.com", envelope.recipient.email, data)


def _accept(engine: Engine, recipients: list[str], now: float) -> list[int]:
    spec = MessageSpec(sender=Address("a@example.com"), to=tuple(Address(r) for r in recipients), text="hi")
    vault = make_vault(engine)
    with engine.begin() as conn:
        public, _ = create_api_key(conn)
        key = find_api_key(conn, public)
        assert key is not None
        ids = [r.message_id for r in insert_messages(conn, key.id, [spec], now=now, vault=vault)[0]]
        queue_for(engine).enqueue(conn, ids, available_at=now)
    return ids


def _worker(
    engine: Engine,
    sink: SmtpSink,
    clock: Clock,
    policy: Policy,
    ip_transports: dict[str, SmtpRelay] | None = None,
) -> DeliveryWorker:
    relay = SmtpRelay(sink.host, sink.port, helo_name="test.example.com", pool_size=2, timeout=10)
    return DeliveryWorker(
        engine,
        queue_for(engine),
        _prepare,
        relay,
        WorkerSettings(batch_size=10, lease_seconds=60, max_attempts=3),
        clock=clock,
        throttle=Throttle(policy, throttle_store_for(engine), ProviderClassifier()),
        ip_transports=ip_transports,
        vault=make_vault(engine),
    )


def _drain(worker: DeliveryWorker) -> int:
    """Run batches until nothing is due at this instant; returns how many batches did work."""
    batches = 0
    while worker.run_once():
        batches += 1
        assert batches < 100, "the worker keeps finding work at a frozen instant: a busy loop"
    return batches


def _delivered(sink: SmtpSink) -> list[str]:
    return [rcpt for mail in sink.received for rcpt in mail.rcpt_tos]


def _jobs(engine: Engine) -> dict[int, tuple[float, int]]:
    jobs = schema.queue_jobs
    with engine.connect() as conn:
        rows = conn.execute(select(jobs.c.message_id, jobs.c.due_at, jobs.c.attempts))
        return {r.message_id: (r.due_at, r.attempts) for r in rows}


def test_limited_provider_waits_for_its_slots_while_other_mail_goes_at_once(
    engine: Engine, smtp_sink: SmtpSink
) -> None:
    clock = Clock(NOON)
    gmail = [f"g{i}@gmail.com" for i in range(30)]
    others = [f"o{i}@example.net" for i in range(8)] + ["m1@outlook.com", "m2@hotmail.com"]
    # The Gmail backlog is older, so it is leased first: the others must still not wait behind it.
    gmail_ids = _accept(engine, gmail, NOON - 60)
    other_ids = _accept(engine, others, NOON - 1)
    worker = _worker(engine, smtp_sink, clock, Policy(providers={"google": Limit(rate=2.0, burst=2)}))

    _drain(worker)
    delivered = _delivered(smtp_sink)
    assert set(others) <= set(delivered)  # every non-Gmail message went at the first instant
    assert len([r for r in delivered if r.endswith("@gmail.com")]) == 2  # Gmail: only the burst

    jobs = _jobs(engine)
    waiting = sorted(jobs[m][0] - NOON for m in gmail_ids if m in jobs)
    assert waiting == pytest.approx([0.5 * n for n in range(1, 29)])  # one slot each, at 2/s
    assert all(jobs[m][1] == 0 for m in gmail_ids if m in jobs)  # no attempt counted
    vault = make_vault(engine)
    with engine.connect() as conn:
        postponed = [m for m in gmail_ids if m in jobs]
        assert all(
            [e[0] for e in list_events(conn, m, vault=vault)] == ["queued"] for m in postponed
        )  # no event spam
        statuses = conn.execute(
            select(schema.messages.c.status).where(schema.messages.c.id.in_(postponed))
        ).scalars()
        assert set(statuses) == {"queued"}
    assert all(m not in jobs for m in other_ids)

    assert worker.run_once() == 0  # nothing is due before the next slot: no busy loop
    clock.now = NOON + 1.0  # two slots later
    _drain(worker)
    assert len([r for r in _delivered(smtp_sink) if r.endswith("@gmail.com")]) == 4
    for step in range(3, 29):  # a worker polling every half second
        clock.now = NOON + 0.5 * step
        _drain(worker)
        sent = len([r for r in _delivered(smtp_sink) if r.endswith("@gmail.com")])
        assert sent == 2 + step  # the burst, then exactly one per slot: 2/s
    assert sorted(_delivered(smtp_sink)) == sorted(gmail + others)  # all sent, each exactly once
    assert _jobs(engine) == {}


def test_warmup_cap_postpones_to_the_next_utc_day(engine: Engine, smtp_sink: SmtpSink) -> None:
    clock = Clock(NOON)
    ip = SendingIp("192.0.2.10", warmup=WarmupSchedule.explicit(date(2024, 10, 4), [3, 10]))
    recipients = [f"r{i}@example.net" for i in range(8)]
    ids = _accept(engine, recipients, NOON)
    worker = _worker(engine, smtp_sink, clock, Policy(ips=(ip,)))

    _drain(worker)
    assert len(smtp_sink.received) == 3  # day 1's cap
    jobs = _jobs(engine)
    assert {jobs[m][0] for m in ids if m in jobs} == {20001 * DAY}  # next UTC midnight
    clock.now = 20001 * DAY - 1
    assert worker.run_once() == 0
    clock.now = 20001 * DAY
    _drain(worker)
    assert sorted(_delivered(smtp_sink)) == sorted(recipients)  # day 2's cap of 10 takes the rest


@pytest.fixture
def second_sink() -> Iterator[SmtpSink]:
    port = free_port()
    sink = SmtpSink("127.0.0.1", port)
    controller = Controller(sink, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def test_each_sending_ip_goes_through_its_own_relay(
    engine: Engine, smtp_sink: SmtpSink, second_sink: SmtpSink
) -> None:
    start = date(2024, 10, 4)
    policy = Policy(
        ips=(
            SendingIp("192.0.2.1", warmup=WarmupSchedule.explicit(start, [2])),
            SendingIp("192.0.2.2", warmup=WarmupSchedule.explicit(start, [100])),
        )
    )
    relay_two = SmtpRelay(second_sink.host, second_sink.port, helo_name="ip2.example.com", pool_size=1)
    worker = _worker(engine, smtp_sink, Clock(NOON), policy, ip_transports={"192.0.2.2": relay_two})
    recipients = [f"r{i}@example.net" for i in range(10)]
    _accept(engine, recipients, NOON)
    _drain(worker)
    # 192.0.2.1 has no relay of its own (the default relay) and a cap of 2; the rest left from .2.
    assert len(smtp_sink.received) == 2 and len(second_sink.received) == 8
    assert sorted(_delivered(smtp_sink) + _delivered(second_sink)) == sorted(recipients)
