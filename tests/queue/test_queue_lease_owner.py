"""Lease owners: a restarted node takes its previous incarnation's jobs back at once, a running node
keeps its leases by renewing them, and a dead node's leases expire within one lease time."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine
from test_queue_backends import _messages

from mailstack.delivery import node_owner
from mailstack.queue import LeaseOwner, queue_for


def test_a_restarted_node_takes_back_only_its_own_earlier_leases(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 4)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=1000.0)
    crashed = LeaseOwner("node-a", 1)
    other = LeaseOwner("node-b", 7)
    mine = queue.lease(2, 30, now=1000.0, owner=crashed)
    theirs = queue.lease(2, 30, now=1000.0, owner=other)
    assert len(mine) == len(theirs) == 2
    assert queue.lease(10, 30, now=1001.0) == []  # all four are held
    restarted = LeaseOwner("node-a", 2)
    assert queue.reclaim(restarted, now=1001.0) == 2
    again = queue.lease(10, 30, now=1001.0, owner=restarted)
    # At once, not after the lease time; node-b's leases are untouched.
    assert sorted(lease.message_id for lease in again) == sorted(lease.message_id for lease in mine)
    assert queue.reclaim(restarted, now=1002.0) == 0  # its own current leases are not taken back
    with engine.begin() as conn:
        assert not queue.complete(conn, mine[0])  # the crashed incarnation's token no longer counts
        assert queue.complete(conn, again[0])


def test_renewed_leases_outlive_the_lease_time_and_unrenewed_ones_expire(engine: Engine) -> None:
    queue = queue_for(engine)
    ids = _messages(engine, 2)
    with engine.begin() as conn:
        queue.enqueue(conn, ids, available_at=1000.0)
    alive = LeaseOwner("node-a", 1)
    dead = LeaseOwner("node-b", 1)
    (kept,) = queue.lease(1, 10, now=1000.0, owner=alive)
    (lost,) = queue.lease(1, 10, now=1000.0, owner=dead)
    for now in (1005.0, 1010.0, 1015.0):
        assert queue.renew(alive, 10, now=now) == 1
    # node-b stopped renewing at 1000: another node takes its job at 1010; node-a's is still held.
    (taken,) = queue.lease(10, 10, now=1016.0, owner=LeaseOwner("node-c", 1))
    assert taken.message_id == lost.message_id
    with engine.begin() as conn:
        assert queue.complete(conn, kept)


def test_node_identity_survives_restarts_and_each_start_is_a_new_incarnation(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = node_owner(tmp_path / "a")
    time.sleep(0.002)
    second = node_owner(tmp_path / "a")
    assert first.node == second.node != ""
    assert first.incarnation < second.incarnation
    assert node_owner(tmp_path / "b").node != first.node  # another data directory, another node


def test_an_expired_lease_of_a_live_incarnation_is_left_to_it_by_its_own_workers(engine: Engine) -> None:
    queue = queue_for(engine)
    (message_id,) = _messages(engine, 1)
    with engine.begin() as conn:
        queue.enqueue(conn, [message_id], available_at=1000.0)
    me = LeaseOwner("node-a", 1)
    (held,) = queue.lease(1, 10, now=1000.0, owner=me)
    # The database was away past the lease time: the worker holding it will record it once it is back.
    assert queue.lease(10, 10, now=1030.0, owner=me) == []
    (taken,) = queue.lease(10, 10, now=1030.0, owner=LeaseOwner("node-b", 1))  # another node may
    assert taken.message_id == held.message_id
