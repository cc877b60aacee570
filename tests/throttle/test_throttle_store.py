"""The throttle's storage on SQLite and on the real PostgreSQL: atomic under concurrency, state that
persists between decisions, and the queue's ``postpone``."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import Engine, select
from support import make_vault

from mailstack.model import Address, MessageSpec
from mailstack.providers import ProviderClassifier
from mailstack.queue import queue_for
from mailstack.storage import create_api_key, find_api_key, insert_messages, schema
from mailstack.throttle import (
    Limit,
    Policy,
    Request,
    SendingIp,
    Throttle,
    WarmupSchedule,
    throttle_store_for,
)

DAY = 86400.0
T0 = 20000 * DAY + 3600.0  # 2024-10-04 01:00 UTC


def _throttle(engine: Engine, policy: Policy) -> Throttle:
    return Throttle(policy, throttle_store_for(engine), ProviderClassifier())


def test_concurrent_decisions_never_hand_out_a_token_or_a_slot_twice(engine: Engine) -> None:
    throttle = _throttle(engine, Policy(providers={"google": Limit(rate=1.0, burst=25)}))
    decisions = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for batch in range(4):
                ids = range(offset + batch * 5, offset + batch * 5 + 5)
                got = throttle.acquire([Request(i, "gmail.com") for i in ids], now=T0)
                with lock:
                    decisions.extend(got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(1000 * n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert len(decisions) == 160
    assert sum(d.send for d in decisions) == 25  # exactly the burst, however the threads interleave
    slots = sorted(d.until for d in decisions if not d.send)
    # Every waiting message has a retry time of its own, one second apart (1/s): no lost update.
    assert slots == [T0 + n for n in range(1, 136)]


def test_state_persists_between_decisions_and_throttle_instances(engine: Engine) -> None:
    policy = Policy(providers={"google": Limit(rate=2.0, burst=1)})
    first = _throttle(engine, policy)
    decisions = first.acquire([Request(1, "gmail.com"), Request(2, "gmail.com")], now=T0)
    assert [(d.send, d.until) for d in decisions] == [(True, 0.0), (False, T0 + 0.5)]
    # Another process (a new store on the same database) sees the empty bucket and the waitlist.
    second = _throttle(engine, policy)
    (newcomer,) = second.acquire([Request(3, "gmail.com")], now=T0)
    assert not newcomer.send and newcomer.until == T0 + 1.0
    (back,) = second.acquire([Request(2, "gmail.com")], now=T0 + 0.5)
    assert back.send  # its retry time came with a token
    buckets = schema.metadata.tables["throttle_buckets"]
    with engine.connect() as conn:
        row = conn.execute(select(buckets).where(buckets.c.key == "provider:google")).one()
    assert (row.updated_at, row.waitlist_until) == (T0 + 0.5, T0 + 1.0)
    assert row.tokens == pytest.approx(0.0)


def test_daily_counts_are_shared_and_per_utc_day(engine: Engine) -> None:
    ip = SendingIp("192.0.2.7", warmup=WarmupSchedule.explicit(date(2024, 10, 4), [2, 3]))
    policy = Policy(ips=(ip,))
    one, two = _throttle(engine, policy), _throttle(engine, policy)
    assert one.acquire([Request(1, "a.example")], now=T0)[0].send
    assert two.acquire([Request(2, "b.example")], now=T0)[0].send
    capped = one.acquire([Request(3, "c.example")], now=T0)[0]
    assert not capped.send and capped.until == 20001 * DAY
    assert [
        d.send for d in two.acquire([Request(i, "c.example") for i in (3, 4, 5, 6)], now=20001 * DAY)
    ] == [
        True,
        True,
        True,
        False,
    ]
    daily = schema.metadata.tables["throttle_daily"]
    with engine.connect() as conn:
        rows = conn.execute(select(daily.c.day, daily.c.sent).order_by(daily.c.day)).all()
    assert [tuple(r) for r in rows] == [(20000, 2), (20001, 3)]


def test_api_key_limits_look_up_each_messages_key(engine: Engine) -> None:
    spec = MessageSpec(
        sender=Address("a@example.com"), to=(Address("x@example.net"), Address("y@example.org"))
    )
    vault = make_vault(engine)
    with engine.begin() as conn:
        public, _ = create_api_key(conn)
        key = find_api_key(conn, public)
        assert key is not None
        ids = [r.message_id for r in insert_messages(conn, key.id, [spec], now=T0, vault=vault)[0]]
    throttle = _throttle(engine, Policy(api_key=Limit(100.0, 100), api_keys={public: Limit(1.0, 1)}))
    decisions = throttle.acquire([Request(i, "example.net") for i in ids], now=T0)
    assert [d.send for d in decisions] == [True, False]  # the key's own limit applies
    assert decisions[1].limit == "api_key"


def test_postpone_puts_a_job_back_without_counting_the_attempt(engine: Engine) -> None:
    spec = MessageSpec(sender=Address("a@example.com"), to=(Address("x@example.net"),))
    queue = queue_for(engine)
    vault = make_vault(engine)
    with engine.begin() as conn:
        public, _ = create_api_key(conn)
        key = find_api_key(conn, public)
        assert key is not None
        (message_id,) = [r.message_id for r in insert_messages(conn, key.id, [spec], now=T0, vault=vault)[0]]
        queue.enqueue(conn, [message_id], available_at=T0)
    (lease,) = queue.lease(1, 60, now=T0)
    with engine.begin() as conn:
        assert queue.retry(conn, lease, available_at=T0, error="451 busy")
    (lease,) = queue.lease(1, 60, now=T0)
    assert lease.attempts == 2
    with engine.begin() as conn:
        assert queue.postpone(conn, lease, available_at=T0 + 30)
        assert not queue.postpone(conn, lease, available_at=T0 + 30)  # the lease is gone now
    assert queue.lease(1, 60, now=T0 + 29.9) == []
    (again,) = queue.lease(1, 60, now=T0 + 30)
    assert again.attempts == 2  # the postponed try did not count
    with engine.connect() as conn:
        error = conn.execute(select(schema.queue_jobs.c.last_error)).scalar_one()
    assert error == "451 busy"  # the last real failure is kept
