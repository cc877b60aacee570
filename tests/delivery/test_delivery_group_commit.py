"""Group commit: each relay answer is in the database while the rest of its batch is still going out, so a
node lost for good leaves only the open transactions (and the commit under way) to be sent again."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import Engine
from support import SmtpSink, make_vault
from test_delivery_worker import Clock, _accept, _prepare, _status

from mailstack.delivery import DeliveryResult, DeliveryWorker, OutgoingMail, SmtpRelay, WorkerSettings
from mailstack.delivery._group_commit import GroupCommit
from mailstack.delivery._transport import ResultCallback
from mailstack.queue import queue_for


class _WatchedRelay:
    """A real relay, one message at a time; before each message it notes whether the previous one's
    outcome has reached the database (waiting up to a few seconds for it)."""

    name = "watched"

    def __init__(self, engine: Engine, relay: SmtpRelay) -> None:
        self._engine = engine
        self._relay = relay
        self.seen_recorded: list[bool] = []

    def deliver(
        self, mail: Sequence[OutgoingMail], on_result: ResultCallback | None = None
    ) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        for position, message in enumerate(mail):
            if position:
                self.seen_recorded.append(self._recorded(mail[position - 1].message_id))
            result = self._relay.deliver([message])[0]
            results.append(result)
            if on_result is not None:
                on_result(position, result)
        return results

    def _recorded(self, message_id: int) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if _status(self._engine, message_id)[0] == "sent":
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self._relay.close()


def test_each_outcome_is_recorded_before_the_batch_ends(engine: Engine, smtp_sink: SmtpSink) -> None:
    ids = _accept(engine, [f"r{i}@example.net" for i in range(6)])
    relay = _WatchedRelay(engine, SmtpRelay(smtp_sink.host, smtp_sink.port, helo_name="test.example.com"))
    settings = WorkerSettings(batch_size=10, lease_seconds=60, max_attempts=3, retry_base_seconds=10)
    worker = DeliveryWorker(
        engine, queue_for(engine), _prepare, relay, settings, clock=Clock(1000.0), vault=make_vault(engine)
    )
    assert worker.run_once() == len(ids)
    relay.close()
    assert relay.seen_recorded == [True] * (len(ids) - 1)
    assert [_status(engine, message_id)[0] for message_id in ids] == ["sent"] * len(ids)


def test_outcomes_a_failed_commit_held_are_handed_back_in_order_and_commits_resume() -> None:
    committed: list[list[int]] = []
    database_up = threading.Event()
    first_commit_started = threading.Event()

    def commit(group: list[int]) -> None:
        first_commit_started.set()
        if not database_up.is_set():
            raise ConnectionError("database away")
        committed.append(group)

    writer: GroupCommit[int] = GroupCommit(commit, max_lag=100)
    writer.add(1)
    assert first_commit_started.wait(5)
    for item in (2, 3):
        writer.add(item)
    assert writer.drain() == [1, 2, 3]  # nothing dropped: the caller keeps them until the database is back
    assert committed == []
    database_up.set()
    for item in (4, 5):
        writer.add(item)
    assert writer.drain() == []
    assert [item for group in committed for item in group] == [4, 5]


def test_handing_over_waits_once_max_lag_outcomes_are_not_committed() -> None:
    release = threading.Event()
    committed: list[int] = []

    def commit(group: list[int]) -> None:
        release.wait(10)
        committed.extend(group)

    writer: GroupCommit[int] = GroupCommit(commit, max_lag=3)
    for item in (1, 2, 3):
        writer.add(item)  # the first is being committed (held), two more wait: at the bound
    fourth = threading.Thread(target=writer.add, args=(4,))
    fourth.start()
    fourth.join(0.5)
    assert fourth.is_alive()  # a node lost now would leave 3 uncommitted, never more
    release.set()
    fourth.join(10)
    assert not fourth.is_alive()
    assert writer.drain() == []
    assert committed == [1, 2, 3, 4]
