"""SQLite writers of one process take turns: all of them commit, and a transaction that ends in any way
(commit, rollback, error, a connection closed with its transaction open) hands the turn on; a writer
accepting mail goes before the background writers waiting, but never keeps one waiting for long. Readers
(a health check, a GET) take no turn and wait for no writer."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from mailstack.storage import create_storage_engine, reading, urgent_writes


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    engine = create_storage_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT NOT NULL)"))
    return engine


def _in_thread(target: object, timeout: float = 10.0) -> None:
    """Run ``target`` in another thread; fail if it does not finish in time (it waits for a turn)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the writer is still waiting for its turn"
    if errors:
        raise errors[0]


def _write(engine: Engine, who: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t (who) VALUES (:who)"), {"who": who})


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_concurrent_writers_all_commit(sqlite_engine: Engine) -> None:
    def writer(name: str) -> None:
        for _ in range(50):
            _write(sqlite_engine, name)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert _count(sqlite_engine) == 400


def test_every_way_a_transaction_ends_hands_the_turn_on(sqlite_engine: Engine) -> None:
    with pytest.raises(RuntimeError), sqlite_engine.begin() as conn:  # rolled back by an exception
        conn.execute(text("INSERT INTO t (who) VALUES ('rolled back')"))
        raise RuntimeError
    _in_thread(lambda: _write(sqlite_engine, "after rollback"))

    with pytest.raises(IntegrityError), sqlite_engine.begin() as conn:  # a failing statement
        conn.execute(text("INSERT INTO t (id, who) VALUES (1, 'duplicate')"))
    _in_thread(lambda: _write(sqlite_engine, "after an error"))

    conn = sqlite_engine.connect()  # a read left open, then closed without commit
    conn.execute(text("SELECT count(*) FROM t"))
    conn.close()
    _in_thread(lambda: _write(sqlite_engine, "after close"))

    with sqlite_engine.connect() as conn:  # commit, then the same connection begins again
        conn.execute(text("INSERT INTO t (who) VALUES ('first')"))
        conn.commit()
        conn.execute(text("INSERT INTO t (who) VALUES ('second')"))
        conn.commit()
    _in_thread(lambda: _write(sqlite_engine, "after two commits"))

    with sqlite_engine.connect() as conn:
        rows = [r.who for r in conn.execute(text("SELECT who FROM t ORDER BY id"))]
    assert rows == ["after rollback", "after an error", "after close", "first", "second", "after two commits"]


def test_a_writer_waits_for_the_turn_in_hand(sqlite_engine: Engine) -> None:
    done = threading.Event()

    def other() -> None:
        _write(sqlite_engine, "other")
        done.set()

    with sqlite_engine.begin() as conn:
        conn.execute(text("INSERT INTO t (who) VALUES ('holder')"))
        thread = threading.Thread(target=other)
        thread.start()
        assert not done.wait(0.3)  # it waits while this transaction is open
    thread.join(10)
    assert done.is_set()
    with sqlite_engine.connect() as conn:
        assert [r.who for r in conn.execute(text("SELECT who FROM t ORDER BY id"))] == ["holder", "other"]


def _waiting_for_turn(thread: threading.Thread) -> bool:
    """Whether ``thread`` is blocked waiting for its turn to write (seen in its stack)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "enter" and frame.f_code.co_filename.endswith("_engine.py"):
            return True
        frame = frame.f_back
    return False


def _until_waiting(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + 10
    while not all(_waiting_for_turn(thread) for thread in threads):
        assert time.monotonic() < deadline, "a writer never started waiting for its turn"
        time.sleep(0.01)


def test_accepting_mail_writes_before_the_waiting_background_writers(sqlite_engine: Engine) -> None:
    # A client waits on an accepting transaction; the delivery backlog's writes can wait for it.
    def accepting() -> None:
        with urgent_writes():
            _write(sqlite_engine, "accepted")

    with sqlite_engine.begin() as conn:
        conn.execute(text("INSERT INTO t (who) VALUES ('holder')"))
        background = [threading.Thread(target=_write, args=(sqlite_engine, f"delivery{i}")) for i in range(3)]
        for thread in background:
            thread.start()
        _until_waiting(background)
        urgent = threading.Thread(target=accepting)
        urgent.start()
        _until_waiting([urgent])
    for thread in [*background, urgent]:
        thread.join(10)
    with sqlite_engine.connect() as conn:
        rows = [r.who for r in conn.execute(text("SELECT who FROM t ORDER BY id"))]
    assert rows[:2] == ["holder", "accepted"]
    assert sorted(rows[2:]) == ["delivery0", "delivery1", "delivery2"]


def test_back_to_back_accepts_do_not_starve_a_background_writer(sqlite_engine: Engine) -> None:
    # Two accepting clients that always have a transaction waiting: the purge (or a delivery outcome)
    # still gets its turn while they go on, not only once they stop.
    background_done = threading.Event()

    def accepting(name: str) -> None:
        with urgent_writes():
            for _ in range(1500):  # 15 s of turns at least; the background writer needs half a second
                if background_done.is_set():
                    return
                with sqlite_engine.begin() as conn:
                    conn.execute(text("INSERT INTO t (who) VALUES (:who)"), {"who": name})
                    time.sleep(0.005)

    clients = [threading.Thread(target=accepting, args=(f"client{i}",)) for i in range(2)]
    for thread in clients:
        thread.start()
    _write(sqlite_engine, "purge")
    background_done.set()
    for thread in clients:
        thread.join(60)
    with sqlite_engine.connect() as conn:
        purge = conn.execute(text("SELECT id FROM t WHERE who = 'purge'")).scalar_one()
        accepted_before = conn.execute(
            text("SELECT count(*) FROM t WHERE id < :id"), {"id": purge}
        ).scalar_one()
    # Half a second of 5 ms turns is about 100 accepts; waiting for the clients to stop is 3000.
    assert accepted_before < 1000, "the background writer waited until the accepting clients stopped"


def test_a_background_writer_looping_back_to_back_lets_another_go_in_turn(sqlite_engine: Engine) -> None:
    # Background writers go in the order they came: a thread that takes the turn again as soon as it
    # leaves it (a worker with a backlog) does not keep a purge waiting until it stops.
    other_done = threading.Event()

    def looping() -> None:
        for _ in range(1500):  # 7.5 s of turns at least
            if other_done.is_set():
                return
            with sqlite_engine.begin() as conn:
                conn.execute(text("INSERT INTO t (who) VALUES ('looping')"))
                time.sleep(0.005)

    loop = threading.Thread(target=looping)
    loop.start()
    while _count(sqlite_engine) < 5:
        time.sleep(0.001)
    _write(sqlite_engine, "other")
    other_done.set()
    loop.join(60)
    with sqlite_engine.connect() as conn:
        other = conn.execute(text("SELECT id FROM t WHERE who = 'other'")).scalar_one()
    # In turn, the other writer waits for the one transaction it found open (two with the count above).
    assert other <= 10, f"the other writer went after {other - 1} of the looping writer's transactions"


def test_urgent_and_background_writers_mixed_all_commit(sqlite_engine: Engine) -> None:
    # Urgent writers take turns among themselves too, and background writers still get theirs.
    def writer(name: str, urgent: bool) -> None:
        with urgent_writes() if urgent else contextlib.nullcontext():
            for _ in range(20):
                _write(sqlite_engine, name)

    threads = [threading.Thread(target=writer, args=(f"w{i}", i % 2 == 0)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert _count(sqlite_engine) == 160


def test_a_reader_does_not_wait_for_a_writer_in_its_transaction(sqlite_engine: Engine) -> None:
    _write(sqlite_engine, "committed")
    in_transaction, reader_done = threading.Event(), threading.Event()

    def writer() -> None:
        with sqlite_engine.begin() as conn:
            conn.execute(text("INSERT INTO t (who) VALUES ('uncommitted')"))
            in_transaction.set()
            reader_done.wait(10)  # holds the write lock and the turn until the reader is through

    holding = threading.Thread(target=writer)
    holding.start()
    try:
        assert in_transaction.wait(10)
        seen: list[str] = []

        def read() -> None:
            with reading(sqlite_engine) as conn:
                seen.extend(conn.execute(text("SELECT who FROM t")).scalars())

        _in_thread(read)  # a writer here would wait for the holding transaction, 10 s and more
        assert seen == ["committed"]  # the last committed snapshot
    finally:
        reader_done.set()
        holding.join(10)
    assert _count(sqlite_engine) == 2


def test_a_write_in_a_reader_fails_and_the_connection_writes_again_afterwards(sqlite_engine: Engine) -> None:
    with reading(sqlite_engine) as conn, pytest.raises(OperationalError, match="readonly"):
        conn.execute(text("INSERT INTO t (who) VALUES ('sneaked')"))
    for n in range(3):  # the pool hands the same connection back: no longer read-only
        _write(sqlite_engine, f"writer{n}")
    assert _count(sqlite_engine) == 3
