"""The delivery journal: outcomes written as the relay answers, recorded at the next start if the batch's
commit never happened, and never recorded twice."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from support import SmtpSink, make_vault
from test_delivery_worker import Clock, _accept, _prepare, _status, _worker

from mailstack.delivery import (
    DeliveryResult,
    DeliveryWorker,
    JournalDirectory,
    JournalEntry,
    OutgoingMail,
    SmtpRelay,
    WorkerSettings,
)
from mailstack.delivery._transport import Outcome
from mailstack.queue import queue_for
from mailstack.storage import list_events, schema


def test_relay_reports_each_outcome_as_its_reply_arrives(smtp_sink: SmtpSink) -> None:
    smtp_sink.replies["no@example.net"] = "550 5.1.1 no such user"
    mail = [
        OutgoingMail(i, "b@example.com", rcpt, b"Subject: t\r\n\r\nhi\r\n")
        for i, rcpt in enumerate(["a@example.net", "no@example.net", "c@example.net"])
    ]
    heard: list[tuple[int, Outcome, int]] = []
    relay = SmtpRelay(smtp_sink.host, smtp_sink.port, helo_name="t.example.com")

    def on_result(position: int, result: DeliveryResult) -> None:
        # When the second result is heard, the relay has taken the first message and not the third.
        heard.append((position, result.outcome, len(smtp_sink.received)))

    results = relay.deliver(mail, on_result)
    relay.close()
    assert [(p, o) for p, o, _ in heard] == [(i, r.outcome) for i, r in enumerate(results)]
    assert [o for _, o, _ in heard] == [Outcome.SENT, Outcome.FAILED, Outcome.SENT]
    assert heard[0][2] == 1 and heard[1][2] == 1


def test_journaled_outcomes_are_recorded_once_at_the_next_start(
    engine: Engine, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    ids = _accept(engine, ["one@example.net", "two@example.net", "three@example.net"])
    queue = queue_for(engine)
    leases = queue.lease(10, 60, now=1000.0)
    assert [lease.message_id for lease in leases] == ids
    journals = JournalDirectory(tmp_path / "journal")
    journal = journals.for_worker(0)
    sent = DeliveryResult(Outcome.SENT, 250, "2.0.0 Ok: queued as Q1 for <one@example.net>")
    for lease in leases[:2]:
        journal.append(JournalEntry(lease.job_id, lease.token, lease.message_id, 1, sent, "<x@example.com>"))
    stale = leases[2]  # a token the job no longer has: another worker owns this outcome
    journal.append(JournalEntry(stale.job_id, "0" * 32, stale.message_id, 1, sent, None))
    journal.close()
    with (tmp_path / "journal" / "delivery-0.journal").open("ab") as torn:
        torn.write(b'{"job": 99, "tok')  # the process died mid-write
    assert b"one@example.net" not in (tmp_path / "journal" / "delivery-0.journal").read_bytes()

    clock = Clock(1001.0)
    worker = _worker(engine, smtp_sink, clock)
    assert worker.replay(journals.pending()) == 2
    assert worker.replay(journals.pending()) == 0  # recorded once, whatever happens to the files
    journals.discard()
    assert journals.pending() == []
    vault = make_vault(engine)
    for message_id in ids[:2]:
        assert _status(engine, message_id)[0] == "sent"
        with engine.connect() as conn:
            assert [e[0] for e in list_events(conn, message_id, vault=vault)] == ["queued", "sent"]
            header = conn.execute(
                select(schema.messages.c.message_id_header).where(schema.messages.c.id == message_id)
            ).scalar()
        assert header == "<x@example.com>"
    assert _status(engine, ids[2])[0] == "queued"
    assert smtp_sink.received == []  # nothing was sent by recording
    clock.now += 120  # the third lease expires and is delivered
    assert worker.run_once() == 1
    assert [m.rcpt_tos for m in smtp_sink.received] == [["three@example.net"]]


def test_worker_clears_its_journal_once_the_batch_is_committed(
    engine: Engine, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    _accept(engine, ["one@example.net", "two@example.net"])
    journals = JournalDirectory(tmp_path / "journal")
    settings = WorkerSettings(batch_size=10, lease_seconds=60)
    relay = SmtpRelay(smtp_sink.host, smtp_sink.port, helo_name="t.example.com")
    worker = DeliveryWorker(
        engine,
        queue_for(engine),
        _prepare,
        relay,
        settings,
        clock=Clock(1000.0),
        vault=make_vault(engine),
        journal=journals.for_worker(0),
    )
    assert worker.run_once() == 2
    assert journals.pending() == []
    assert len(smtp_sink.received) == 2


def test_journals_opened_before_the_previous_run_is_discarded_keep_what_they_write(tmp_path: Path) -> None:
    journals = JournalDirectory(tmp_path / "journal")
    previous = journals.for_worker(0)
    sent = DeliveryResult(Outcome.SENT, 250, "ok")
    previous.append(JournalEntry(1, "a" * 32, 1, 1, sent, None))
    previous.close()
    current = journals.for_worker(0)  # this run's worker, built before the recovery ran
    journals.discard()
    assert journals.pending() == []
    current.append(JournalEntry(2, "b" * 32, 2, 1, sent, None))
    assert [entry.job_id for entry in journals.pending()] == [2]  # a crash now finds it
