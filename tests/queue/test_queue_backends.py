"""The queue contract, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from support import make_vault

from mailstack.model import Address, MessageSpec
from mailstack.queue import queue_for
from mailstack.storage import create_api_key, find_api_key, insert_messages


def _messages(engine: Engine, count: int) -> list[int]:
    spec = MessageSpec(
        sender=Address("a@example.com"),
        to=tuple(Address(f"r{i}@example.net") for i in range(count)),
        text="x",
    )
    vault = make_vault(engine)
    with engine.begin() as conn:
        public, _secret = create_api_key(conn)
        record = find_api_key(conn, public)
        assert record is not None
        accepted = insert_messages(conn, record.id, [spec], now=1000.0, vault=vault)
    return [r.message_id for r in accepted[0]]


def test_enqueued_jobs_are_leased_once_until_completed(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 3)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=1000.0)
    first = queue.lease(10, 60, now=1000.0)
    assert sorted(lease.message_id for lease in first) == sorted(ids)
    assert all(lease.attempts == 1 for lease in first)
    assert queue.lease(10, 60, now=1001.0) == []  # leased jobs are invisible until the lease expires
    with engine.begin() as conn:
        assert all(queue.complete(conn, lease) for lease in first)
    assert queue.lease(10, 60, now=5000.0) == []
    assert queue.stats(now=5000.0).ready == 0


def test_enqueue_rolls_back_with_the_transaction(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 1)
    try:
        with engine.begin() as conn:
            queue.enqueue(conn, ids, available_at=1000.0)
            raise RuntimeError("accept failed")
    except RuntimeError:
        pass
    assert queue.lease(10, 60, now=1000.0) == []


def test_expired_lease_is_retried_and_the_old_holder_loses_it(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 1)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=1000.0)
    (crashed,) = queue.lease(1, 30, now=1000.0)
    (second,) = queue.lease(1, 30, now=1031.0)  # the first worker died: its lease expired
    assert second.message_id == crashed.message_id and second.attempts == 2
    with engine.begin() as conn:
        assert not queue.complete(conn, crashed)  # stale lease: must not remove the job
        assert queue.complete(conn, second)


def test_retry_waits_for_its_time_and_dead_letters_stay_out(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 2)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=1000.0)
    a, b = queue.lease(2, 30, now=1000.0)
    with engine.begin() as conn:
        assert queue.retry(conn, a, available_at=1100.0, error="451 try later")
        assert queue.dead(conn, b, error="exhausted")
    assert queue.lease(10, 30, now=1099.0) == []
    (again,) = queue.lease(10, 30, now=1100.0)
    assert again.message_id == a.message_id and again.attempts == 2
    stats = queue.stats(now=1100.0)
    assert (stats.leased, stats.dead) == (1, 1)
    with engine.begin() as conn:
        assert queue.complete(conn, again)
    assert queue.lease(10, 30, now=10**9) == []  # the dead letter is never leased again


def test_release_gives_back_unworked_leases_without_counting_an_attempt(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 1)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=1000.0)
    leases = queue.lease(5, 300, now=1000.0)
    queue.release(leases, now=1000.0)
    (again,) = queue.lease(5, 300, now=1000.0)
    assert again.attempts == 1


def test_concurrent_workers_never_share_a_job(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 40)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=1000.0)
    taken: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            leases = queue.lease(3, 300, now=1000.0)
            if not leases:
                return
            with lock:
                taken.extend(lease.message_id for lease in leases)
            with engine.begin() as conn:
                for lease in leases:
                    assert queue.complete(conn, lease)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(taken) == sorted(ids)  # every job exactly once


def test_complete_many_removes_owned_jobs_and_reports_lost_leases(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 3)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=1000.0)
    first = queue.lease(3, 30, now=1000.0)
    queue.lease(1, 30, now=1031.0)  # all three expired; another worker re-leases one of them
    with engine.begin() as conn:
        lost = queue.complete_many(conn, first)
    assert len(lost) == 1
    assert lost <= {lease.job_id for lease in first}
    assert queue.stats(now=1031.0).leased == 1  # the re-leased job stays with its new owner
