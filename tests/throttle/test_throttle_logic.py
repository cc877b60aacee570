"""The pure throttle arithmetic and decisions, with a controlled clock: no database, no sleeping."""

from __future__ import annotations

from datetime import date

import pytest

from mailstack.throttle import (
    API_KEY,
    PROVIDER,
    WARMUP,
    BucketState,
    Item,
    Limit,
    Policy,
    SendingIp,
    Snapshot,
    WarmupSchedule,
    needs,
    next_utc_midnight,
    plan,
    refill,
    utc_day,
    wait_seconds,
    waitlist,
)

DAY = 86400.0
T0 = 20000 * DAY  # 2024-10-04 00:00:00 UTC, a UTC midnight


def _snapshot(policy: Policy, items: list[Item], now: float, snapshot: Snapshot | None = None) -> Snapshot:
    """What a store would hand the planner: existing state kept, new buckets and counters created."""
    buckets, days = needs(policy, items, now)
    if snapshot is None:
        snapshot = Snapshot({}, {})
    for key, state in buckets.items():
        snapshot.buckets.setdefault(key, state)
    for day in days:
        snapshot.daily.setdefault(day, 0)
    return snapshot


def _run(policy: Policy, items: list[Item], now: float, snapshot: Snapshot) -> list[bool]:
    return [d.send for d in plan(policy, items, _snapshot(policy, items, now, snapshot), now)]


def _gmail(message_id: int, api_key_id: int | None = None) -> Item:
    return Item(message_id, "gmail.com", "google", api_key_id, "pk" if api_key_id else None)


# --- buckets ----------------------------------------------------------------------------------------


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    limit = Limit(rate=2.0, burst=3)
    state = BucketState(0.0, 100.0)
    assert refill(state, limit, 100.5).tokens == pytest.approx(1.0)
    assert refill(state, limit, 101.0).tokens == pytest.approx(2.0)
    assert refill(state, limit, 500.0).tokens == 3.0  # capped at the burst
    assert wait_seconds(BucketState(0.25, 0), limit) == pytest.approx(0.375)  # 0.75 token at 2/s
    assert wait_seconds(BucketState(1.0, 0), limit) == 0.0


def test_a_clock_going_backwards_mints_nothing() -> None:
    limit = Limit(rate=10.0, burst=10)
    state = BucketState(0.0, 100.0)
    assert refill(state, limit, 99.0) == state  # another node's clock was ahead: no refill, time kept


def test_the_waitlist_hands_out_retry_times_one_token_apart() -> None:
    limit = Limit(rate=4.0, burst=1)
    state = BucketState(0.0, 0.0)
    times = []
    for _ in range(3):
        state, slot = waitlist(state, limit, ready_at=0.25)
        times.append(slot)
    assert times == [0.25, 0.5, 0.75]
    assert state.tokens == 0.0  # waiting takes nothing
    # Once the waitlist lies in the past, a new waiter gets the next token's time again.
    assert waitlist(state, limit, ready_at=10.0)[1] == 10.0


def test_limits_are_validated_and_burst_defaults_to_a_second() -> None:
    assert Limit.of(50.0).burst == 50
    assert Limit.of(0.2).burst == 1
    assert Limit.of(2.5, 7).burst == 7
    with pytest.raises(ValueError):
        Limit(0.0, 1)
    with pytest.raises(ValueError):
        Limit(1.0, 0)


# --- warm-up ----------------------------------------------------------------------------------------


def test_utc_days_and_midnights() -> None:
    assert utc_day(T0) == 20000 and utc_day(T0 - 0.001) == 19999
    assert next_utc_midnight(T0 + 3600) == T0 + DAY
    assert next_utc_midnight(T0) == T0 + DAY  # at midnight sharp, the next one


def test_geometric_warmup_doubles_to_its_ceiling_and_stays() -> None:
    start = date(2024, 10, 4)  # day number 20000
    schedule = WarmupSchedule.geometric(start, first=50, ceiling=1000)
    assert [schedule.cap(20000 + i) for i in range(7)] == [50, 100, 200, 400, 800, 1000, 1000]
    assert schedule.cap(19999) == 0  # before the start the IP sends nothing
    assert schedule.cap(20000 + 100000) == 1000  # no float overflow years later


def test_explicit_warmup_curve_keeps_its_last_value() -> None:
    schedule = WarmupSchedule.explicit(date(2024, 10, 4), [20, 40, 90])
    assert [schedule.cap(20000 + i) for i in range(5)] == [20, 40, 90, 90, 90]
    with pytest.raises(ValueError):
        WarmupSchedule(date(2024, 10, 4), curve=(10,), first=5, ceiling=10)
    with pytest.raises(ValueError):
        WarmupSchedule.geometric(date(2024, 10, 4), first=10, ceiling=5)


# --- decisions --------------------------------------------------------------------------------------


def test_burst_goes_at_once_then_each_message_gets_its_own_retry_time_at_the_rate() -> None:
    policy = Policy(providers={"google": Limit(rate=10.0, burst=3)})
    items = [_gmail(i) for i in range(1, 8)]
    snapshot = _snapshot(policy, items, T0)
    decisions = plan(policy, items, snapshot, T0)
    assert [d.send for d in decisions] == [True, True, True, False, False, False, False]
    slots = [d.until - T0 for d in decisions[3:]]
    assert slots == pytest.approx([0.1, 0.2, 0.3, 0.4])  # spaced exactly 1/rate apart
    assert {d.limit for d in decisions[3:]} == {PROVIDER}
    assert snapshot.buckets["provider:google"].tokens == pytest.approx(0.0)  # only senders took tokens


def test_a_waiting_message_finds_its_token_at_its_retry_time() -> None:
    policy = Policy(providers={"google": Limit(rate=10.0, burst=1)})
    snapshot = Snapshot({}, {})
    first = plan(policy, [_gmail(1), _gmail(2)], _snapshot(policy, [_gmail(1), _gmail(2)], T0, snapshot), T0)
    assert [d.send for d in first] == [True, False]
    slot = first[1].until
    assert _run(policy, [_gmail(2)], slot, snapshot) == [True]
    # A newcomer at the same instant finds the token gone and queues behind the waitlist.
    newcomer = plan(policy, [_gmail(3)], _snapshot(policy, [_gmail(3)], slot, snapshot), slot)[0]
    assert not newcomer.send and newcomer.until == pytest.approx(slot + 0.1)


def test_over_a_long_run_the_planner_never_exceeds_rate_times_time_plus_burst() -> None:
    policy = Policy(providers={"google": Limit(rate=5.0, burst=2)})
    snapshot = Snapshot({}, {})
    pending = {i: T0 for i in range(1, 201)}  # message id -> due time, like the queue
    decided = 0
    sent_at: list[float] = []
    now = T0
    while pending and now < T0 + 30:
        due = sorted(m for m, at in pending.items() if at <= now)
        decided += len(due)
        items = [_gmail(m) for m in due]
        for decision in plan(policy, items, _snapshot(policy, items, now, snapshot), now):
            if decision.send:
                sent_at.append(now)
                del pending[decision.message_id]
            else:
                pending[decision.message_id] = decision.until
        now += 0.05  # a worker polling every 50 ms
    for start in (T0, T0 + 7.3, T0 + 19.9):
        window = [t for t in sent_at if start <= t < start + 10]
        assert len(window) <= 5 * 10 + 2
    assert len([t for t in sent_at if T0 + 5 <= t < T0 + 25]) >= 5 * 20 - 2  # and it keeps up the rate
    assert decided <= 200 + len(sent_at) + 5  # about two decisions per message: no churn


def test_a_late_waiter_uses_the_tokens_saved_for_it_up_to_the_burst() -> None:
    policy = Policy(providers={"google": Limit(rate=10.0, burst=5)})
    snapshot = Snapshot({}, {})
    items = [_gmail(i) for i in range(1, 21)]
    decisions = plan(policy, items, _snapshot(policy, items, T0, snapshot), T0)
    waiting = [d for d in decisions if not d.send]
    assert len(waiting) == 15
    # The workers stall for two seconds: the bucket saved only its burst, so only five may go at once.
    late = T0 + 2.0
    back = [_gmail(d.message_id) for d in waiting]
    assert sum(_run(policy, back, late, snapshot)) == 5


def test_only_the_bottleneck_is_charged_so_a_backlog_does_not_block_other_mail_of_the_key() -> None:
    # The API key may send 10/s; Gmail takes 1/s. A Gmail backlog must not eat the key's allowance.
    policy = Policy(api_key=Limit(10.0, 10), providers={"google": Limit(1.0, 1)})
    snapshot = Snapshot({}, {})
    gmail = [_gmail(i, api_key_id=7) for i in range(1, 51)]
    assert sum(_run(policy, gmail, T0, snapshot)) == 1
    others = [Item(100 + i, "example.net", "other", 7, "pk") for i in range(9)]
    assert _run(policy, others, T0, snapshot) == [True] * 9  # 10 - the one Gmail message
    assert snapshot.buckets["api:7"].tokens == pytest.approx(0.0)
    # And when the API key's own limit is the bottleneck, the message waits on the key's waitlist.
    decision = plan(policy, [Item(200, "example.net", "other", 7, "pk")], snapshot, T0)[0]
    assert not decision.send and decision.limit == API_KEY and decision.until == pytest.approx(T0 + 0.1)


def test_per_key_overrides_and_other_domains_are_counted_per_domain() -> None:
    policy = Policy(
        api_key=Limit(100.0, 100),
        api_keys={"slow": Limit(1.0, 1)},
        providers={"other": Limit(1.0, 1)},
    )
    snapshot = Snapshot({}, {})
    items = [
        Item(1, "a.example", "other", 1, "fast"),
        Item(2, "b.example", "other", 1, "fast"),  # another domain: its own bucket
        Item(3, "a.example", "other", 1, "fast"),  # a.example's one token is gone
        Item(4, "c.example", "other", 2, "slow"),
        Item(5, "d.example", "other", 2, "slow"),  # the slow key's one token is gone
    ]
    assert _run(policy, items, T0, snapshot) == [True, True, False, True, False]


def test_warmup_cap_postpones_to_the_next_utc_day_then_grows() -> None:
    start = date(2024, 10, 4)
    policy = Policy(ips=(SendingIp("192.0.2.1", warmup=WarmupSchedule.explicit(start, [3, 6])),))
    snapshot = Snapshot({}, {})
    items = [_gmail(i) for i in range(1, 6)]
    noon = T0 + DAY / 2
    decisions = plan(policy, items, _snapshot(policy, items, noon, snapshot), noon)
    assert [d.send for d in decisions] == [True, True, True, False, False]
    assert all(d.ip == "192.0.2.1" for d in decisions[:3])
    assert {(d.until, d.limit) for d in decisions[3:]} == {(T0 + DAY, WARMUP)}
    assert snapshot.daily[("192.0.2.1", 20000)] == 3
    # Day 2: a cap of 6, counted afresh.
    assert _run(policy, items[3:], T0 + DAY, snapshot) == [True, True]
    assert snapshot.daily[("192.0.2.1", 20001)] == 2


def test_an_ip_before_its_warmup_starts_sends_nothing() -> None:
    policy = Policy(ips=(SendingIp("192.0.2.1", warmup=WarmupSchedule.explicit(date(2024, 10, 5), [10])),))
    decision = plan(policy, [_gmail(1)], _snapshot(policy, [_gmail(1)], T0, None), T0)[0]
    assert (decision.send, decision.until) == (False, T0 + DAY)


def test_mail_spreads_over_ips_and_moves_to_another_when_one_is_capped() -> None:
    start = date(2024, 10, 4)
    policy = Policy(
        ips=(
            SendingIp("192.0.2.1", warmup=WarmupSchedule.explicit(start, [2])),
            SendingIp("192.0.2.2", limit=Limit(100.0, 100)),
        )
    )
    snapshot = Snapshot({}, {})
    items = [_gmail(i) for i in range(1, 11)]
    decisions = plan(policy, items, _snapshot(policy, items, T0, snapshot), T0)
    assert all(d.send for d in decisions)
    used = [d.ip for d in decisions]
    assert used.count("192.0.2.1") == 2 and used.count("192.0.2.2") == 8


def test_an_ip_limit_holds_mail_back_on_the_ip_that_frees_first() -> None:
    policy = Policy(
        ips=(SendingIp("192.0.2.1", limit=Limit(1.0, 1)), SendingIp("192.0.2.2", limit=Limit(2.0, 1)))
    )
    items = [_gmail(i) for i in range(1, 4)]
    decisions = plan(policy, items, _snapshot(policy, items, T0, None), T0)
    assert [d.send for d in decisions] == [True, True, False]
    assert {d.ip for d in decisions[:2]} == {"192.0.2.1", "192.0.2.2"}
    assert decisions[2].until == pytest.approx(T0 + 0.5) and decisions[2].limit == "ip"  # the 2/s one


def test_an_empty_policy_is_inactive() -> None:
    assert not Policy().active
    assert not Policy(ips=(SendingIp("192.0.2.1"),)).active
    assert Policy(providers={"google": Limit(1.0, 1)}).active
